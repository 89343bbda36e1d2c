"""JSON request bodies nested deeper than any of ours are refused before a parser recurses into them.

Python's ``json`` and marshmallow recurse once per level: a 64 KiB body of ``[[[[…`` is 30,000 levels and ends
in RecursionError (a 500, and a worker thread's stack spent). No body of this API is deeper than 3 levels.
"""

from __future__ import annotations

import re

from flask import abort, request

from entrypoints.http.security import NO_USER_TOKEN

MAX_JSON_DEPTH = 32
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)  # an unterminated string runs to the end
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS = frozenset(b"[{")


def nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether arrays/objects in ``body`` nest deeper than ``limit``; linear, and no parsing."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_A_BRACKET)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:  # the common case, at C speed
        return False
    depth = 0
    for byte in brackets:
        depth += 1 if byte in _OPENERS else -1
        if depth > limit:
            return True
    return False


def refuse_deeply_nested_json() -> None:
    """Runs before any view (so before webargs parses the body); the 64 KiB body cap applies while reading."""
    if request.endpoint is None or not request.is_json:
        return
    if request.path.startswith(NO_USER_TOKEN):  # a signed body is checked over its raw bytes first
        return
    if nested_deeper_than(request.get_data(cache=True), MAX_JSON_DEPTH):
        abort(400, description=f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.")
