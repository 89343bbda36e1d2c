"""Hostile uploads, built in memory: each one is something a client could PUT with a valid URL."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image

IMAGES = Path(__file__).parent / "fixtures" / "images"

SVG_WITH_SCRIPT = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
)
HTML = b"<!doctype html><html><body><script>fetch('/steal')</script></body></html>"


def jpeg_header_on_random_bytes(size: int = 4096) -> bytes:
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(size)


def truncated_jpeg() -> bytes:
    data = (IMAGES / "one_face.jpg").read_bytes()
    return data[: len(data) // 2]


def png_of(path: Path) -> bytes:
    out = io.BytesIO()
    Image.open(path).save(out, format="PNG")
    return out.getvalue()


def png_pixel_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid 1-bit greyscale PNG of ``width`` x ``height`` zero pixels: a few hundred kB that
    would decode to gigabytes. Written by hand so building it costs no memory either."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
