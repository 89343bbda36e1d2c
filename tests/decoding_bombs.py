"""Images that are valid but cost a decoder far more than their size: built in memory, in milliseconds.

- A progressive JPEG whose last AC scan is repeated until the file holds thousands of scans: libjpeg decodes
  every one over every block of the image, so a megabyte of them pins a CPU for half a minute at 4000 x 4000.
- PNGs of zero pixels, any size, mode and bit depth: a few hundred kilobytes that decode to hundreds of MB.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

SOS, EOI = b"\xff\xda", b"\xff\xd9"


def progressive_jpeg(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", progressive=True, **params)
    return buffer.getvalue()


def last_scan(jpeg: bytes) -> bytes:
    """The last scan of a progressive JPEG from Pillow: its SOS segment and entropy-coded data, up to EOI.

    libjpeg's progressive script ends with an AC scan (luma 1..63, successive approximation's last bit), and
    the Huffman tables in force at EOI are the ones written for it: repeated, it decodes again and again.
    """
    assert jpeg.endswith(EOI), "not a complete JPEG"
    return jpeg[jpeg.rindex(SOS) : -len(EOI)]


def with_scans(jpeg: bytes, total: int) -> bytes:
    """``jpeg`` with its last scan repeated before EOI until it holds ``total`` scans."""
    scans = jpeg.count(SOS)  # Pillow's own output: no 0xFFDA inside a segment
    assert total >= scans
    return jpeg[: -len(EOI)] + last_scan(jpeg) * (total - scans) + EOI


def with_scans_to_size(jpeg: bytes, size: int) -> bytes:
    """``jpeg`` with its last scan repeated until the file is at least ``size`` bytes."""
    repeats = -(-(size - len(jpeg)) // len(last_scan(jpeg)))
    return jpeg[: -len(EOI)] + last_scan(jpeg) * repeats + EOI


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def deflated_zeros(length: int) -> bytes:
    """A zlib stream of ``length`` zero bytes, fast at any length: one fully flushed block, repeated."""
    block = 1 << 22
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = deflate.compress(bytes(block)) + deflate.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(length, block)
    tail = deflate.compress(bytes(rest)) + deflate.flush()
    adler32 = ((length % 65521) << 16) | 1  # adler32 of zeros: a stays 1, b counts the bytes
    return b"\x78\xda" + segment * count + tail + struct.pack(">I", adler32)


_PNG_SAMPLES = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type: samples a pixel (grey, RGB, grey + alpha, RGBA)


def zero_png(width: int, height: int, *, colour_type: int, bit_depth: int = 8) -> bytes:
    """A valid PNG of ``width`` x ``height`` zero pixels (black, and transparent when it has alpha)."""
    row_bytes = 1 + (width * _PNG_SAMPLES[colour_type] * bit_depth + 7) // 8  # filter byte + samples
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    rows = deflated_zeros(height * row_bytes)
    chunks = png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def rgba_png(width: int, height: int) -> bytes:
    """8-bit RGBA: 7000 x 7000 is ~190 KB on disk and 196 MB decoded."""
    return zero_png(width, height, colour_type=6)


def grey16_png(width: int, height: int) -> bytes:
    """16-bit greyscale: Pillow decodes it as ``I;16``, 2 bytes a pixel."""
    return zero_png(width, height, colour_type=0, bit_depth=16)
