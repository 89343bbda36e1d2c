"""Bounded work per image, whatever the bytes: what the sanitizer refuses before Pillow decodes a pixel.

The bound is proven by what is never reached (Pillow's open, ``load``, ``draft``, ``tobytes``, the decoders'
pixel buffers) and by how few steps the JPEG marker walk takes, not by timing.
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pillow_heif
import pytest
from PIL import Image, ImageCms, ImageFile, JpegImagePlugin, WebPImagePlugin
from PIL import _imaging as pillow_core
from pillow_heif import as_plugin

from adapters.pillow_images import PillowImageSanitizer, jpeg_scans
from adapters.pillow_images.sanitizer import MAX_DECODE_BYTES
from domain.errors import ContentRejected
from tests import decoding_bombs

pytestmark = pytest.mark.integration

IMAGES = Path(__file__).resolve().parents[1] / "fixtures" / "images"
MiB = 1024 * 1024


# --- helpers ---------------------------------------------------------------------------------------


def one_face(mode: str = "RGB") -> Image.Image:
    with Image.open(IMAGES / "one_face.jpg") as image:
        return image.convert(mode)


def encoded(image: Image.Image, image_format: str, **params: Any) -> bytes:
    if image_format == "HEIF":  # pillow-heif's own encoder: the test registers no Pillow plugin itself
        buffer = io.BytesIO()
        pillow_heif.from_pillow(image).save(buffer, quality=85)
        return buffer.getvalue()
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **params)
    return buffer.getvalue()


def sample(mode: str) -> Image.Image:
    """The face at 64 x 48 in ``mode``; with alpha, its left third transparent (so no encoder drops it)."""
    image = one_face(mode).resize((64, 48))
    if "A" in mode:
        alpha = Image.new("L", image.size, 255)
        alpha.paste(0, (0, 0, 21, 48))
        image.putalpha(alpha)
    return image


def refusal(sanitizer: PillowImageSanitizer, data: bytes, declared_type: str) -> ContentRejected:
    with pytest.raises(ContentRejected) as refused:
        sanitizer.sanitize(data, declared_type)
    return refused.value


class DecodeReached(Exception):
    """Raised by a blocked spy: the sanitizer let the bytes through to that step. No ``_UNDECODABLE``."""


@dataclass
class Decoders:
    """Which of Pillow's steps the sanitizer reached, in order; the ``blocked`` ones raise DecodeReached."""

    calls: list[str] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)

    def reached(self, step: str) -> None:
        self.calls.append(step)
        if step in self.blocked:
            raise DecodeReached(step)

    @property
    def decoding(self) -> list[str]:
        """Every step past reading the header."""
        return [step for step in self.calls if step != "open"]


DECODING_STEPS: dict[str, list[tuple[object, str]]] = {
    "load": [
        (Image.Image, "load"),
        (ImageFile.ImageFile, "load"),
        (WebPImagePlugin.WebPImageFile, "load"),
        (as_plugin._LibHeifImageFile, "load"),  # pillow-heif decodes in its load, before any buffer
    ],
    "draft": [(Image.Image, "draft"), (JpegImagePlugin.JpegImageFile, "draft")],
    "tobytes": [(Image.Image, "tobytes")],
    "open": [(Image, "open")],
}


@pytest.fixture
def decoders(monkeypatch) -> Decoders:
    """Spies on Pillow's header read (``open``), its decoders and every pixel buffer it allocates."""
    spy = Decoders()

    def spying(step: str, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def spied(*args: Any, **kwargs: Any) -> Any:
            spy.reached(step)
            return original(*args, **kwargs)

        return spied

    for step, targets in DECODING_STEPS.items():
        for owner, name in targets:
            monkeypatch.setattr(owner, name, spying(step, vars(owner)[name]))
    assert vars(Image)["core"] is pillow_core  # the module ImageFile.load_prepare allocates through
    monkeypatch.setattr(pillow_core, "new", spying("pixel buffer", pillow_core.new))
    return spy


@dataclass
class MarkerSearches:
    """Each search of the JPEG marker walk: where it started and the furthest byte it looked at."""

    pattern: Any
    steps: list[tuple[int, int]] = field(default_factory=list)

    def search(self, data: bytes, position: int) -> Any:
        found = self.pattern.search(data, position)
        self.steps.append((position, found.end() if found else len(data)))
        return found

    @property
    def furthest(self) -> int:
        return max(end for _, end in self.steps)


@pytest.fixture
def marker_searches(monkeypatch) -> MarkerSearches:
    searches = MarkerSearches(jpeg_scans._MARKER)
    monkeypatch.setattr(jpeg_scans, "_MARKER", searches)
    return searches


@pytest.fixture
def sanitizer() -> PillowImageSanitizer:
    return PillowImageSanitizer()


@pytest.fixture(scope="module")
def blank_4000_progressive() -> bytes:
    """The image of the measured attack: 4000 x 4000, its last AC scan 31 bytes long."""
    return decoding_bombs.progressive_jpeg(Image.new("RGB", (4000, 4000), (128, 128, 128)))


# --- many scans ------------------------------------------------------------------------------------

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
CAMERA_EXIF = Image.Exif()
CAMERA_EXIF[0x010F] = "FixtureCam"


@pytest.mark.parametrize(
    ("mode", "params", "scans"),
    [
        ("RGB", {}, 10),
        ("RGB", {"optimize": True, "subsampling": 0}, 10),
        ("RGB", {"restart_marker_blocks": 1}, 10),  # RST markers inside every scan's entropy-coded data
        ("RGB", {"icc_profile": SRGB, "exif": CAMERA_EXIF.tobytes(), "comment": b"\xff\xda" * 64}, 10),
        ("L", {}, 6),
        ("CMYK", {}, 18),
    ],
    ids=["colour", "444-optimized", "restart-markers", "metadata-with-sos-bytes", "grey", "cmyk"],
)
def test_progressive_jpegs_as_pillow_writes_them_pass(sanitizer, mode, params, scans):
    data = decoding_bombs.progressive_jpeg(one_face(mode), quality=90, **params)
    assert data.count(b"\xff\xda") == scans + (64 if "comment" in params else 0)

    result = sanitizer.sanitize(data, "image/jpeg")

    assert (result.width, result.height) == (512, 512)


@pytest.mark.parametrize("path", sorted(IMAGES.glob("*.jpg")), ids=lambda path: path.name)
def test_the_sample_photos_and_their_progressive_copies_pass(sanitizer, path):
    as_taken = path.read_bytes()
    with Image.open(path) as image:
        progressive = decoding_bombs.progressive_jpeg(image, quality=90, exif=image.info.get("exif", b""))

    for data in (as_taken, progressive):
        assert sanitizer.sanitize(data, "image/jpeg").width > 0


@pytest.mark.parametrize("params", [{}, {"restart_marker_blocks": 1}], ids=["plain", "restart-markers"])
def test_a_photo_with_64_scans_passes_and_one_with_65_is_refused_before_pillow_opens_it(
    sanitizer, decoders, params
):
    photo = decoding_bombs.progressive_jpeg(one_face(), quality=90, **params)
    assert b"\xff\x00" in decoding_bombs.last_scan(photo)  # the repeated scan carries stuffed bytes
    if params:
        assert b"\xff\xd0" in decoding_bombs.last_scan(photo)  # and restart markers

    assert sanitizer.sanitize(decoding_bombs.with_scans(photo, 64), "image/jpeg").width == 512
    decoders.calls.clear()
    refused = refusal(sanitizer, decoding_bombs.with_scans(photo, 65), "image/jpeg")

    assert refused.code == "not_an_image"
    assert "64 scans" in refused.detail
    assert decoders.calls == []  # not even the header was parsed


def test_the_crafted_many_scans_jpeg_is_one_pillow_would_decode_scan_after_scan():
    """So the refusal is the walk's doing, not the decoder's: libjpeg takes the file, every scan of it."""
    small = decoding_bombs.progressive_jpeg(Image.new("RGB", (64, 64), (128, 128, 128)))
    crafted = decoding_bombs.with_scans(small, 5000)

    with Image.open(io.BytesIO(crafted)) as image:
        image.load()
        assert image.size == (64, 64)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert jpeg_scans.excess(crafted) == "the JPEG has more than 64 scans"


@pytest.mark.parametrize("size", [1_100_000, 16 * MiB], ids=["1.1MB-worker-timeout", "16MiB"])
def test_a_many_scans_bomb_is_refused_from_its_first_kilobytes_before_pillow_sees_it(
    sanitizer, decoders, marker_searches, blank_4000_progressive, size
):
    bomb = decoding_bombs.with_scans_to_size(blank_4000_progressive, size)
    assert bomb.count(b"\xff\xda") > 20_000
    decoders.blocked = set(DECODING_STEPS)  # were the walk to let it through: fail now, not minutes later

    started = time.perf_counter()
    refused = refusal(sanitizer, bomb, "image/jpeg")
    elapsed = time.perf_counter() - started

    assert refused.code == "not_an_image"
    assert decoders.calls == []
    assert len(marker_searches.steps) <= jpeg_scans.MAX_SEGMENTS + 1
    assert marker_searches.furthest < len(blank_4000_progressive) + 65 * 32  # the header and 65 scans
    assert elapsed < 1  # a secondary observation: microseconds here


def test_a_jpeg_packed_with_empty_segments_is_refused_after_a_bounded_walk(
    sanitizer, decoders, marker_searches
):
    photo = encoded(one_face(), "JPEG", quality=90)
    empty_comment = b"\xff\xfe\x00\x02"
    few = photo[:2] + empty_comment * 100 + photo[2:]
    packed = photo[:2] + empty_comment * (16 * MiB // 4) + photo[2:]

    assert sanitizer.sanitize(few, "image/jpeg").width == 512
    decoders.calls.clear()
    marker_searches.steps.clear()
    refused = refusal(sanitizer, packed, "image/jpeg")

    assert refused.code == "not_an_image"
    assert decoders.calls == []
    assert len(marker_searches.steps) == jpeg_scans.MAX_SEGMENTS + 1


def test_the_walk_crosses_megabytes_of_entropy_coded_data_in_one_search(marker_searches):
    """Stuffed bytes (0xFF00), fill (0xFFFF) and restart markers are passed over by the search itself:
    the walk's steps depend on the segments, never on the size of the data between them."""
    small = decoding_bombs.progressive_jpeg(Image.new("RGB", (64, 64), (128, 128, 128)))
    scan_data = (b"\xff\x00" * 1000 + b"\xff\xff\xff\xd3" + bytes(1000)) * (16 * MiB // 2004)
    inflated = small[:-2] + scan_data + small[-2:]
    assert jpeg_scans.excess(small) is None
    steps_for_small = len(marker_searches.steps)
    marker_searches.steps.clear()

    assert jpeg_scans.excess(inflated) is None
    assert len(marker_searches.steps) == steps_for_small
    assert marker_searches.furthest == len(inflated)  # it did read to EOI


def test_a_truncated_progressive_jpeg_is_not_an_image(sanitizer):
    photo = decoding_bombs.progressive_jpeg(one_face(), quality=90)

    assert refusal(sanitizer, photo[: len(photo) // 2], "image/jpeg").code == "not_an_image"


# --- the memory budget -----------------------------------------------------------------------------


def test_a_190_kb_7000_by_7000_rgba_png_is_refused_by_the_budget_before_decoding(sanitizer, decoders):
    bomb = decoding_bombs.rgba_png(7000, 7000)
    assert len(bomb) < 200_000
    assert 7000 * 7000 <= 50_000_000  # under the pixel cap: the budget refuses it, 196 MB > 160 MiB

    refused = refusal(sanitizer, bomb, "image/png")

    assert refused.code == "image_too_large"
    assert decoders.calls == ["open"]  # the header, and nothing after it

    decoders.blocked = {"load"}  # with a budget of exactly its size, the same file goes on to decoding
    with pytest.raises(DecodeReached):
        PillowImageSanitizer(max_decode_bytes=7000 * 7000 * 4).sanitize(bomb, "image/png")


def test_a_16_bit_greyscale_png_is_budgeted_at_2_bytes_a_pixel_at_the_default_budget(decoders):
    width = 10_240
    height, remainder = divmod(MAX_DECODE_BYTES, width * 2)
    assert remainder == 0 and (width, height) == (10_240, 8192)
    sanitizer = PillowImageSanitizer(max_pixels=100_000_000)  # the budget alone decides
    decoders.blocked = {"load"}  # 168 MB of 16-bit pixels are not decoded here: reaching load is the pass

    with pytest.raises(DecodeReached):
        sanitizer.sanitize(decoding_bombs.grey16_png(width, height), "image/png")
    assert decoders.calls == ["open", "load"]

    decoders.calls.clear()
    refused = refusal(sanitizer, decoding_bombs.grey16_png(width, height + 1), "image/png")
    assert refused.code == "image_too_large"
    assert decoders.calls == ["open"]


@pytest.mark.parametrize(
    ("image_format", "mode", "bytes_per_pixel"),
    [
        ("JPEG", "RGB", 3),
        ("JPEG", "L", 1),
        ("JPEG", "CMYK", 4),
        ("PNG", "RGB", 3),
        ("PNG", "RGBA", 4),
        ("PNG", "LA", 2),
        ("PNG", "P", 1),
        ("PNG", "I;16", 2),
        ("WEBP", "RGB", 3),
        ("WEBP", "RGBA", 4),
        ("HEIF", "RGB", 3),
        ("HEIF", "RGBA", 4),
    ],
)
def test_every_format_is_budgeted_from_its_header_and_refused_before_decoding(
    decoders, image_format, mode, bytes_per_pixel
):
    data = encoded(sample(mode), image_format, quality=90)
    declared_type = f"image/{image_format.lower()}"
    budget = 64 * 48 * bytes_per_pixel
    decoders.calls.clear()  # making the sample read and decoded the fixture

    # max_side=32: a JPEG would be drafted; the budget is checked before that too
    over = refusal(PillowImageSanitizer(max_decode_bytes=budget - 1, max_side=32), data, declared_type)
    assert over.code == "image_too_large"
    assert decoders.calls == ["open"]

    result = PillowImageSanitizer(max_decode_bytes=budget, max_side=32).sanitize(data, declared_type)
    assert max(result.width, result.height) <= 32
    assert "load" in decoders.decoding


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_a_12_megapixel_selfie_is_well_within_the_budget(sanitizer, image_format):
    selfie = one_face().resize((4032, 3024), Image.Resampling.BICUBIC)
    data = encoded(selfie, image_format, quality=92, compress_level=1)
    decoded_bytes = selfie.width * selfie.height * 3
    assert decoded_bytes < MAX_DECODE_BYTES / 4  # 36 MB: room for 4 such

    result = sanitizer.sanitize(data, f"image/{image_format.lower()}")

    assert (result.width, result.height) == (2016, 1512)  # a whole-factor draft or box reduce


def test_a_budget_of_nothing_is_refused_at_construction():
    with pytest.raises(ValueError, match="limits"):
        PillowImageSanitizer(max_decode_bytes=0)
