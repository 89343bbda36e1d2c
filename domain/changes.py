"""Changes the app can wait for: ``GET /v1/uploads/{id}?wait=N`` and ``GET /v1/tryons/{id}?wait=N``.

Whoever commits a change the app should see announces it on the change board afterwards, best effort: a
lost announcement only makes a waiting request run out its time and answer what the database holds. A
waiting request holds one thread, never a process, and reads the database twice at most.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from domain.errors import DependencyUnavailable
from domain.ports import ChangeBoard, Topic

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 25
"""The longest a request may wait for a change: below the 30 s idle limits of common proxies and clients."""

SETTLED = "settled"
"""What is announced about an upload that is settled (verified, rejected, or gone: deleted, expired). A
verifier's other verdicts are the code of a retryable refusal (``upload_missing``) or of an outage
(``storage_unavailable``, ...)."""

ERASED = "erased"
"""What is announced about a try-on (queued or running) whose user was erased: a waiting GET finds it gone."""

T = TypeVar("T")


def announce(board: ChangeBoard, topic: Topic, key: str, message: str) -> None:
    """Announce a committed change; an unreachable board is logged, never raised: the step that made the
    change has succeeded, and a waiter answers from the database when its time runs out."""
    try:
        board.announce(topic, key, message)
    except DependencyUnavailable:
        log.warning("change not announced", extra={"topic": topic.value, "key": key})


def watch(
    board: ChangeBoard,
    topic: Topic,
    key: str,
    *,
    wait_seconds: float,
    read: Callable[[], T],
    settled: Callable[[T], bool],
) -> T:
    """What ``read`` gives once the key changes, or after ``wait_seconds`` without a change; at once when
    there is nothing to wait for (no wait asked, settled already, or no waiting place free).

    Listening begins before the first read, so a change committed after that read is heard. ``read``
    raises for a resource that is not the caller's before any waiting."""
    seconds = min(wait_seconds, MAX_WAIT_SECONDS)
    if seconds <= 0:
        return read()
    with board.listen(topic, key) as listener:
        current = read()
        if settled(current):
            return current
        listener.wait(seconds)
    return read()
