"""Image types: which ones the service stores, and which family the first bytes announce.

The one table of magic bytes: the sanitiser sniffs an upload with it before any decoder sees it, and the
generator adapter sniffs a downloaded result with it. Only bytes are trusted here, never a declared
type, a file name or a decoder's guess.
"""

from __future__ import annotations

from collections.abc import Callable

JPEG, PNG, WEBP, HEIF = "jpeg", "png", "webp", "heif"
"""The families a selfie may be in. Others (gif, tiff, bmp, avif) are recognised only to be refused."""

STORED_TYPES = {JPEG: "image/jpeg", PNG: "image/png", WEBP: "image/webp"}
"""The families the service stores (sanitised sources and results), by their content type."""

IMAGE_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
"""File extensions of the image types the service stores (sanitised sources and results)."""

_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_SIGNATURES: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    (JPEG, lambda data: data.startswith(b"\xff\xd8\xff")),
    (PNG, lambda data: data.startswith(b"\x89PNG\r\n\x1a\n")),
    (WEBP, lambda data: data[:4] == b"RIFF" and data[8:12] == b"WEBP"),
    ("gif", lambda data: data.startswith((b"GIF87a", b"GIF89a"))),
    ("tiff", lambda data: data.startswith((b"II*\x00", b"MM\x00*"))),
    ("bmp", lambda data: data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES),
)

_HEVC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_GENERIC_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})
_BRAND_FAMILIES = ((_HEVC_BRANDS, HEIF), (_AVIF_BRANDS, "avif"), (_GENERIC_HEIF_BRANDS, HEIF))
_MAX_BRANDS = 64


def image_family(data: bytes) -> str | None:
    """The raster format ``data`` starts like, or None when it is no image format we know.

    SVG, HTML, scripts and random bytes are None: they are documents or noise, not raster images.
    """
    for family, matches in _SIGNATURES:
        if matches(data):
            return family
    return _iso_media_family(data)


def stored_content_type(data: bytes) -> str | None:
    """The content type of a storable image (JPEG, PNG or WebP) from its magic bytes, otherwise None."""
    family = image_family(data)
    return None if family is None else STORED_TYPES.get(family)


def _iso_media_family(data: bytes) -> str | None:
    """HEIF (or AVIF) from the ISO-BMFF ``ftyp`` box that opens the file: its major and compatible brands.

    An HEVC brand anywhere means HEIF; AVIF wins only over the generic ``mif1``/``msf1``.
    """
    box_size = int.from_bytes(data[:4], "big")
    if data[4:8] != b"ftyp" or box_size < 16 or box_size % 4 or box_size > len(data):
        return None
    major = data[8:12]
    if major in _AVIF_BRANDS:
        return "avif"
    brands = {major} | {data[i : i + 4] for i in range(16, min(box_size, 16 + 4 * _MAX_BRANDS), 4)}
    for family_brands, family in _BRAND_FAMILIES:
        if brands & family_brands:
            return family
    return None
