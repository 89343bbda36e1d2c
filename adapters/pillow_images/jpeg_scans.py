"""A JPEG's scans, counted from its markers before any decoder sees the bytes.

libjpeg entropy-decodes every scan of a progressive JPEG over every block of the image at full size
(``draft()`` does not help), and neither libjpeg nor Pillow limits how many scans a file holds: one AC scan
repeated costs a few dozen bytes and a few milliseconds at 4000 x 4000, so a 1 MB file pins a worker for
half a minute. Real encoders write few scans: libjpeg's progressive script has 6 (greyscale), 10 (colour) or
18 (CMYK), a baseline JPEG has 1 to 4.
"""

from __future__ import annotations

import re

MAX_SCANS = 64
"""More start-of-scan markers than this is no photograph: several times what any encoder writes."""

MAX_SEGMENTS = 1024
"""Marker segments walked before giving up (scans included, EOI and restart markers not). A real JPEG has a
few dozen: tables, a handful of APPn, at most 255 ICC chunks. It keeps the walk a bounded number of steps
however many 4-byte segments a file packs."""

_EOI, _SOS = 0xD9, 0xDA
_MARKER = re.compile(rb"\xff[^\x00\x01\xd0-\xd8\xff]")
"""The next marker, as libjpeg finds it: 0xFF then a code. Not markers: 0xFF00 (a stuffed 0xFF inside
entropy-coded data), 0xFFFF (fill: the marker is at the last 0xFF) and the codes that carry no length and
end no scan (TEM 0x01, RST0-7 0xD0-0xD7, SOI 0xD8). One byte and a class, no quantifier: the search looks at
each byte once, whatever the bytes (16 MiB of 0xFF: about 0.1 s)."""


def excess(data: bytes) -> str | None:
    """Why the JPEG ``data`` (starting with SOI) holds more than an encoder writes, or None.

    One pass from SOI to the first EOI, as libjpeg reads it: each segment is skipped by its 2-byte length;
    after it, and after the entropy-coded data that follows a start of scan, the next marker is searched
    for, so garbage between segments is passed over as libjpeg passes over it. Whatever follows EOI
    (a second MPO picture, a polyglot's payload) is never decoded, so it is not walked. Truncated or
    malformed bytes are left to the decoder, which refuses them.
    """
    scans = segments = 0
    position = 2
    while (marker := _MARKER.search(data, position)) is not None:
        at = marker.start()
        code = data[at + 1]
        if code == _EOI:
            return None
        segments += 1
        if segments > MAX_SEGMENTS:
            return f"the JPEG has more than {MAX_SEGMENTS} marker segments"
        if code == _SOS:
            scans += 1
            if scans > MAX_SCANS:
                return f"the JPEG has more than {MAX_SCANS} scans"
        position = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")  # always moves on by 2 or more
    return None
