"""A misbehaving sanitizer for the sandbox's tests, in a module of its own: its child imports only this.

``Scripted().sanitize(data, ...)`` does what ``data`` says: ``sleep``, ``spin``, ``hog``, ``exit``,
``segfault``, ``refuse:<code>``, ``raise``, ``print``, ``big:<bytes>``, ``timed:<seconds>``, ``report``.
Whatever returns, returns a SanitizedImage whose ``data`` is a JSON report of the process that ran it.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from typing import Any

from domain.errors import ContentRejected
from domain.model import Pixels, SanitizedImage
from domain.ports import ImageSanitizer

SECRET_IN_EXCEPTION = "exception text that must never reach the parent's logs"
HOG_BYTES = 4 * 1024 * 1024 * 1024


class Scripted(ImageSanitizer):
    def sanitize(self, data: bytes, declared_type: str) -> SanitizedImage:
        command, _, argument = data.decode().partition(":")
        started = time.time()
        if command == "sleep":
            time.sleep(3600)
        elif command == "spin":
            while True:
                pass
        elif command == "hog":
            hoard = bytearray(HOG_BYTES)  # MemoryError under RLIMIT_AS
            return self._report(started, extra=len(hoard))
        elif command == "exit":
            os._exit(7)
        elif command == "segfault":
            ctypes.string_at(0)
        elif command == "refuse":
            raise ContentRejected(f"refused as {argument}", code=argument)
        elif command == "raise":
            raise ValueError(SECRET_IN_EXCEPTION)
        elif command == "print":
            print("noise on stdout that must not reach the reply pipe", flush=True)
            os.write(1, b"\x00" * 4096)
        elif command == "big":
            return SanitizedImage(b"\xff" * int(argument), "image/jpeg", 1, 1, Pixels(1, 1, b"abc"))
        elif command == "timed":
            time.sleep(float(argument))
        return self._report(started, declared_type=declared_type)

    def _report(self, started: float, **extra: object) -> SanitizedImage:
        report = {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "started": started,
            "ended": time.time(),
            "modules": sorted(sys.modules),
            "environment": sorted(os.environ),
            **extra,
        }
        return SanitizedImage(json.dumps(report).encode(), "image/jpeg", 2, 1, Pixels(2, 1, bytes(range(6))))


def report(image: SanitizedImage) -> dict[str, Any]:
    loaded = json.loads(image.data)
    assert isinstance(loaded, dict)
    return loaded
