"""Decode an uploaded selfie within safe limits and re-encode it as a metadata-free, upright sRGB JPEG.

Error codes (``ContentRejected.code``):

- ``not_an_image``: the bytes are no image format we recognise (SVG, HTML, scripts, random bytes, empty),
  or they start like the declared format but do not decode (truncated, corrupt), or they are a JPEG with
  more than 64 scans or 1,024 marker segments (no encoder writes that; libjpeg would decode every scan
  over the whole image). The JPEG's markers are counted before Pillow sees the bytes.
- ``content_type_mismatch``: the bytes are a real raster image, but not of the declared type (a PNG
  declared as image/jpeg, a GIF or TIFF declared as anything), or the declared type is not one we take.
- ``image_too_large``: the header announces more pixels than allowed (50 MP by default), a side of 0 or over
  20,000 px, or pixels that would take more than ``MAX_DECODE_BYTES`` (160 MiB by default) once decoded:
  width x height x bands x bytes per sample of the mode the decoder produces. Checked from the header
  (Pillow's and pillow-heif's lazy open), for every format alike, before any pixel is decoded.
"""

from __future__ import annotations

import functools
import io
import math
import struct

from PIL import Image, ImageMode, ImageOps
from pillow_heif import register_heif_opener

from adapters.pillow_images import jpeg_scans
from adapters.pillow_images.colour import flattened, in_srgb
from domain import images as sniff
from domain.errors import ContentRejected
from domain.model import Pixels, SanitizedImage
from domain.ports import ImageSanitizer

MAX_SIDE_PIXELS = 20_000
MAX_DECODE_BYTES = 160 * 1024 * 1024
"""The decoded pixels one image may take: width x height x bands x bytes per sample, from the header. It
admits a 50 MP RGB photo (150 MB, the largest opaque photo the pixel cap lets in) and refuses 49 MP with
alpha (a 190 KB 7000 x 7000 RGBA PNG: 196 MB decoded, ~600 MB at peak once flattened). 256 MiB would refuse
nothing the 50 MP cap admits: no mode these decoders produce takes more than 4 bytes a pixel. It bounds
the decode, not the whole pipeline: Pillow keeps RGB in 4 bytes a pixel, and converting, flattening and
resampling add working copies."""
WHOLE_FACTOR_FLOOR = 0.75
"""A JPEG draft or a box reduce by a whole factor may land up to 25 % below ``max_side``: for a 12 MP
photo that is 2016 px instead of 2048, for a tenth of the cost of decoding and resampling in full."""

_PIL_FORMATS = {sniff.JPEG: "JPEG", sniff.PNG: "PNG", sniff.WEBP: "WEBP", sniff.HEIF: "HEIF"}
_DECLARED_FAMILY = {
    "image/jpeg": sniff.JPEG,
    "image/png": sniff.PNG,
    "image/webp": sniff.WEBP,
    "image/heic": sniff.HEIF,
    "image/heif": sniff.HEIF,
}
_UNDECODABLE = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, RuntimeError)
_RESAMPLE = Image.Resampling.LANCZOS


@functools.cache
def _register_heif_once() -> None:
    """pillow-heif's opener is registered at first HEIF use, never at import."""
    register_heif_opener()


class PillowImageSanitizer(ImageSanitizer):
    def __init__(
        self,
        *,
        max_pixels: int = 50_000_000,
        max_decode_bytes: int = MAX_DECODE_BYTES,
        max_side: int = 2048,
        preview_side: int = 512,
        jpeg_quality: int = 90,
    ) -> None:
        if min(max_pixels, max_decode_bytes, max_side, preview_side) < 1 or not 1 <= jpeg_quality <= 95:
            raise ValueError("limits must be positive and jpeg_quality within 1..95")
        self._max_pixels = max_pixels
        self._max_decode_bytes = max_decode_bytes
        self._max_side = max_side
        self._preview_side = preview_side
        self._jpeg_quality = jpeg_quality

    def sanitize(self, data: bytes, declared_type: str) -> SanitizedImage:
        pil_format = _expected_format(data, declared_type)
        if pil_format == "JPEG" and (excess := jpeg_scans.excess(data)) is not None:
            raise ContentRejected(excess, code="not_an_image")
        if pil_format == "HEIF":
            _register_heif_once()
        try:
            with Image.open(io.BytesIO(data), formats=[pil_format]) as opened:  # the header only
                self._check_dimensions(opened.size)
                self._check_decode_budget(opened)
                if pil_format == "JPEG":
                    self._draft(opened)
                opened.load()  # the first (or HEIF primary) frame only
                self._check_dimensions(opened.size)
                image = self._clean(opened)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as bomb:
            raise ContentRejected("the image has too many pixels", code="image_too_large") from bomb
        except _UNDECODABLE as broken:
            raise ContentRejected("the image could not be decoded", code="not_an_image") from broken
        encoded = io.BytesIO()
        image.save(encoded, format="JPEG", quality=self._jpeg_quality, optimize=False)
        return SanitizedImage(
            data=encoded.getvalue(),
            content_type="image/jpeg",
            width=image.width,
            height=image.height,
            preview=self._preview(image),
        )

    def _check_dimensions(self, size: tuple[int, int]) -> None:
        width, height = size
        if not (0 < width <= MAX_SIDE_PIXELS and 0 < height <= MAX_SIDE_PIXELS):
            raise ContentRejected("the image dimensions are out of range", code="image_too_large")
        if width * height > self._max_pixels:
            raise ContentRejected("the image has too many pixels", code="image_too_large")

    def _check_decode_budget(self, opened: Image.Image) -> None:
        """The header's full size, even for a JPEG that is then drafted smaller: a progressive JPEG's
        coefficients are buffered at full size whatever the output scale."""
        try:
            layout = ImageMode.getmode(opened.mode)
        except KeyError as unknown:
            detail = "the image has a pixel layout we do not decode"
            raise ContentRejected(detail, code="not_an_image") from unknown
        bytes_per_sample = int(layout.typestr[2:])  # "|u1" RGB, "<u2" I;16, "<i4" I, "<f4" F
        if opened.width * opened.height * len(layout.bands) * bytes_per_sample > self._max_decode_bytes:
            raise ContentRejected("the decoded image would take too much memory", code="image_too_large")

    def _draft(self, jpeg: Image.Image) -> None:
        """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still leaves enough pixels."""
        longest = max(jpeg.size)
        if longest <= self._max_side:
            return
        ratio = self._max_side * WHOLE_FACTOR_FLOOR / longest
        jpeg.draft("RGB", (max(1, math.ceil(jpeg.width * ratio)), max(1, math.ceil(jpeg.height * ratio))))

    def _clean(self, decoded: Image.Image) -> Image.Image:
        """Upright, flattened, downscaled, sRGB, and with an empty ``info`` (the JPEG writer reads it)."""
        icc_profile = decoded.info.get("icc_profile")
        ImageOps.exif_transpose(decoded, in_place=True)
        image = in_srgb(self._downscaled(flattened(decoded)), icc_profile)
        image.info = {}
        return image

    def _downscaled(self, image: Image.Image) -> Image.Image:
        longest = max(image.size)
        if longest <= self._max_side:
            return image
        factor = -(-longest // self._max_side)
        if -(-longest // factor) >= self._max_side * WHOLE_FACTOR_FLOOR:
            return image.reduce(factor)
        image.thumbnail((self._max_side, self._max_side), _RESAMPLE, reducing_gap=2.0)
        return image

    def _preview(self, image: Image.Image) -> Pixels:
        """A detector-sized copy; ``reducing_gap=1`` (box-reduce first) keeps it a few milliseconds."""
        scale = min(1.0, self._preview_side / max(image.size))
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        preview = image if size == image.size else image.resize(size, _RESAMPLE, reducing_gap=1.0)
        return Pixels(width=preview.width, height=preview.height, rgb=preview.tobytes())


def _expected_format(data: bytes, declared_type: str) -> str:
    """The one Pillow format the bytes may be opened as, or the refusal."""
    family = sniff.image_family(data)
    if family is None:
        raise ContentRejected("the content is not an image", code="not_an_image")
    if _DECLARED_FAMILY.get(declared_type.strip().lower()) != family:
        raise ContentRejected("the content is not of the declared type", code="content_type_mismatch")
    return _PIL_FORMATS[family]
