"""Run another ImageSanitizer in a child process the parent can kill, so no image costs more than one budget.

``SandboxedImageSanitizer(inner)`` sends each image to a long-lived child process that runs ``inner`` and
sends the result back; the parent enforces a wall-clock budget per image from outside the decoder and the
child runs under resource limits. Whatever a decoder does with hostile bytes (loops, allocates, crashes),
the verifier loses one budget at most and answers with a refusal the domain already knows how to handle:

- the inner sanitizer's ``ContentRejected`` comes back with the same code (one of the port's three) and
  detail;
- the budget runs out (``budget_seconds``, 20 s by default): the child is SIGKILLed, a warning with the
  elapsed time is logged, and the image is refused ``image_too_large``;
- the child dies (``MemoryError`` under its address-space cap, a segfault, its CPU-time cap, a kill from
  outside) or answers more than ``max_result_bytes``: refused ``image_too_large`` too, the image cost more
  than we allow;
- any other exception in the child: refused ``not_an_image``.

A refusal is final: nothing here retries an image, and no error that would make the caller retry comes out
of ``sanitize`` because of an image. A child that was killed or died is replaced at once (its successor
starts while the refusal goes back), so the next image finds a fresh one. ``SandboxUnavailable`` (a
``DependencyUnavailable``) is raised only when a child cannot be started at all, which is never the
image's doing.

**The child is a fresh interpreter, never a fork of the parent.** It is started with ``subprocess``
(fork + exec of ``sys.executable -I``), which replaces the process image before any Python code runs, so
nothing the parent loaded — TensorFlow and its thread pools, MTCNN's model, open sockets (``close_fds``),
credentials in the environment (the child gets an allow-listed environment) — reaches the child, whenever it
is started or restarted. The child imports only this package (Pillow, pillow-heif, the domain's model and
errors) and whatever ``inner``'s pickle names. Call ``start()`` when the verifier boots (before or after
loading the face model, it does not matter for safety) to pay the child's start-up (~0.1 s) there rather
than in the first verification; without it the first ``sanitize`` starts the child.

**Limits set in the child** (a second line behind the parent's budget, and what still holds if the parent
is gone): ``RLIMIT_AS`` = ``address_space_bytes`` (``DEFAULT_ADDRESS_SPACE_BYTES``), ``RLIMIT_CPU`` reset
before every image to the CPU time used so far plus ``cpu_seconds`` (the budget + 2 s by default; the
kernel sends SIGXCPU past it), ``RLIMIT_CORE`` 0 (a crash must not write a selfie to disk). The child
ignores SIGINT and SIGTERM and runs in its own session, so a platform shutting the dyno down cannot kill it
mid-image and turn a good selfie into a refusal: the parent ends it (EOF on its pipe, or SIGKILL), and a
child whose parent died exits within a second.

**Concurrency:** one child per ``SandboxedImageSanitizer``, and calls are serialised on a lock: a second
thread waits for the first image to finish (at most one budget) before its own budget starts. The verifier
runs one verification at a time; give each thread its own instance for parallel sanitising. After a
``fork()`` (e.g. a pre-forking server that started the sandbox in its master), the forked copy leaves the
inherited child to the process that started it and starts its own on first use.

**Transport:** pipes. Requests (trusted) are a small binary frame; replies are a strict binary frame, never
a pickle, so a child that a decoder bug subverted cannot make the parent run code by what it answers. A
reply's size is bounded by ``max_result_bytes`` (32 MiB by default; a sanitised selfie plus its preview is a
few MB).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import pickle
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from domain.errors import ContentRejected, DependencyUnavailable
from domain.model import Pixels, SanitizedImage
from domain.ports import ImageSanitizer

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_BUDGET_SECONDS = 20.0
DEFAULT_ADDRESS_SPACE_BYTES = 1280 * MiB
"""The child's address-space cap (RLIMIT_AS: virtual memory, so it also counts reservations, which is why
the child runs with ``MALLOC_ARENA_MAX=1``: without it, every thread libheif decodes with leaves a 64 MiB
malloc arena behind, and a long-lived child's reservations creep towards the cap).

Peak virtual size (VmPeak) of a fresh child sanitising one image with ``PillowImageSanitizer``'s defaults
(Pillow 11, pillow-heif with libheif 1.23), in MiB: idle 60. A 12 MP selfie: JPEG 79, progressive JPEG
109, HEIC 174. At the 50 MP cap: JPEG 103 (drafted), progressive 4:4:4 JPEG 369 (coefficients buffered at
full size), RGB PNG 356, 16-bit grey PNG 572, RGB WebP 837; HEIC at 30 MP (about the most one HEVC image
holds) 292, with alpha 459; RGBA within the 160 MiB decode budget (42 MP): PNG 668, WebP 910, the most of
all (938 in a child that had decoded a dozen large images before). 1 GiB would leave that one ~10 %, so
1.25 GiB: every legitimate image fits with 300 MiB to spare, and a decoder that runs away stops there (a
2.5 GB dyno holds it beside the ~750 MB face model). Past the cap a Python allocation raises MemoryError
(refused ``image_too_large``, the child replaced); one inside libjpeg or libheif surfaces from Pillow as a
broken stream (the inner sanitizer's ``not_an_image``); a crash is ``image_too_large``."""
DEFAULT_MAX_RESULT_BYTES = 32 * MiB
DEFAULT_STARTUP_TIMEOUT_SECONDS = 30.0
CPU_MARGIN_SECONDS = 2
_MAX_REQUEST_BYTES = 256 * MiB
_PIPE_BYTES = MiB  # Linux's default pipe-max-size for unprivileged processes
_STOP_GRACE_SECONDS = 2.0
_REAP_SECONDS = 5.0
_ORPHAN_POLL_SECONDS = 1.0
_WATCH_STACK_BYTES = 256 * 1024
_CHILD_ENVIRONMENT = ("PATH", "LD_LIBRARY_PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
_CHILD_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from adapters.pillow_images.sandbox import _child_main; _child_main()"
)

# Frames. Parent -> child: CONFIG_LEN + pickled _Config once, then per image REQUEST + declared type + data.
# Child -> parent: REPLY (nonce, kind, body length) + body; READY first, then one reply per request.
_CONFIG_LEN = struct.Struct("!Q")
_REQUEST = struct.Struct("!8sHQ")
_REPLY = struct.Struct("!8sBQ")
_RESULT = struct.Struct("!IIIIBQ")  # width, height, preview width, preview height, len(type), len(data)
_READY, _RESULT_OK, _REJECTED, _FAILED, _OUT_OF_MEMORY = range(5)
_READY_NONCE = bytes(8)
_MAX_CODE_CHARS = 64
_PORT_CODES = frozenset({"content_type_mismatch", "not_an_image", "image_too_large"})
"""What ``ImageSanitizer.sanitize`` may refuse with; any other code from the child is out of protocol."""
_MAX_DETAIL_CHARS = 500


class SandboxUnavailable(DependencyUnavailable):
    """The sandbox's child could not be started (a deployment problem, never an image's): retry later."""


@dataclass(frozen=True)
class _Config:
    inner: bytes
    address_space_bytes: int
    cpu_seconds: int


class _OutOfTime(Exception):
    pass


class _ChildGone(Exception):
    pass


class _OutOfMemory(Exception):
    pass


class _BadReply(Exception):
    def __init__(self, detail: str, *, code: str = "not_an_image") -> None:
        super().__init__(detail)
        self.code = code


class SandboxedImageSanitizer(ImageSanitizer):
    """``inner`` in a child process with a wall-clock budget, an address-space cap and a CPU-time cap."""

    def __init__(
        self,
        inner: ImageSanitizer,
        *,
        budget_seconds: float = DEFAULT_BUDGET_SECONDS,
        address_space_bytes: int = DEFAULT_ADDRESS_SPACE_BYTES,
        cpu_seconds: int | None = None,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        startup_timeout_seconds: float = DEFAULT_STARTUP_TIMEOUT_SECONDS,
    ) -> None:
        """``cpu_seconds`` (RLIMIT_CPU per image) defaults to the budget rounded up plus 2 s. ``inner`` must
        pickle (a module-level class with plain attributes, as ``PillowImageSanitizer``): the child imports
        its module and rebuilds it."""
        if not (budget_seconds > 0 and startup_timeout_seconds > 0):
            raise ValueError("budget_seconds and startup_timeout_seconds must be positive")
        if min(address_space_bytes, max_result_bytes) < 1 or (cpu_seconds is not None and cpu_seconds < 1):
            raise ValueError("address_space_bytes, max_result_bytes and cpu_seconds must be positive")
        try:
            pickled_inner = pickle.dumps(inner)
        except Exception as unpicklable:
            raise TypeError(f"the inner sanitizer does not pickle: {unpicklable}") from unpicklable
        self._budget = float(budget_seconds)
        self._max_result_bytes = max_result_bytes
        self._startup_timeout = float(startup_timeout_seconds)
        cpu = cpu_seconds if cpu_seconds is not None else math.ceil(budget_seconds) + CPU_MARGIN_SECONDS
        self._config = pickle.dumps(_Config(pickled_inner, address_space_bytes, cpu))
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        _INSTANCES.add(self)

    def start(self) -> None:
        """Start the child now and wait until it is ready (idempotent); raises ``SandboxUnavailable``."""
        with self._lock:
            self._ready_worker()

    def close(self) -> None:
        """End the child (EOF on its pipe, SIGKILL if it lingers); a later ``sanitize`` starts a new one."""
        with self._lock:
            worker, self._worker = self._worker, None
            if worker is not None:
                worker.stop()

    def __enter__(self) -> SandboxedImageSanitizer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def child_pid(self) -> int | None:
        """The current child's process id, if one is running (for logs and tests)."""
        worker = self._worker
        return None if worker is None else worker.pid

    def sanitize(self, data: bytes, declared_type: str) -> SanitizedImage:
        with self._lock:
            worker = self._ready_worker()
            nonce = os.urandom(8)
            started = time.monotonic()
            try:
                kind, body = worker.call(
                    nonce, declared_type, data, started + self._budget, self._max_result_bytes
                )
                return _outcome(kind, body, worker.pid)
            except _OutOfTime:
                elapsed = time.monotonic() - started
                self._replace(worker)
                log.warning(
                    "image sanitiser killed after %.2f s: over its %g s budget (child %d)",
                    elapsed,
                    self._budget,
                    worker.pid,
                )
                detail = f"decoding the image ran out of its {self._budget:g} s budget"
                raise ContentRejected(detail, code="image_too_large") from None
            except _ChildGone:
                status = self._replace(worker)
                log.warning(
                    "image sanitiser child %d died after %.2f s (%s)",
                    worker.pid,
                    time.monotonic() - started,
                    _describe(status),
                )
                detail = "decoding the image took more than the sanitiser allows"
                raise ContentRejected(detail, code="image_too_large") from None
            except _OutOfMemory:
                self._replace(worker)  # it exits by itself; a fresh one never carries a failed allocation
                log.warning("image sanitiser child %d ran out of its address space", worker.pid)
                detail = "decoding the image needed more memory than allowed"
                raise ContentRejected(detail, code="image_too_large") from None
            except _BadReply as bad:
                self._replace(worker)
                log.warning("image sanitiser child %d answered out of protocol: %s", worker.pid, bad)
                raise ContentRejected("the image could not be decoded", code=bad.code) from None

    # --- the child's life -------------------------------------------------------------------------

    def _ready_worker(self) -> _Worker:
        """The current child, started (or replaced: dead, or inherited through a fork) and handshaken."""
        worker = self._worker
        if worker is not None and worker.exited():
            worker.stop()
            if worker.owned:
                log.warning("image sanitiser child %d had died while idle; starting another", worker.pid)
            worker = None
        if worker is None:
            worker = self._worker = self._spawn_or_raise()
        if not worker.ready:
            try:
                worker.handshake(self._config, time.monotonic() + self._startup_timeout)
            except (_OutOfTime, _ChildGone, _BadReply) as failed:
                self._worker = None
                status = worker.kill()
                why = f"{type(failed).__name__}, {_describe(status)}"
                raise SandboxUnavailable(f"the image sanitiser's child did not start ({why})") from None
        return worker

    def _spawn_or_raise(self) -> _Worker:
        try:
            return _Worker.spawn()
        except OSError as failed:
            raise SandboxUnavailable(
                f"the image sanitiser's child could not be started: {failed}"
            ) from failed

    def _replace(self, worker: _Worker) -> int | None:
        """Kill ``worker`` (if still there) and start its successor now, so it imports while we answer."""
        status = worker.kill()
        self._worker = None
        try:
            self._worker = _Worker.spawn()
        except OSError as failed:  # the next call tries again, and raises SandboxUnavailable if it must
            log.error("image sanitiser child could not be restarted: %s", failed)
        return status

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        if self._worker is not None:
            self._worker.abandon()
            self._worker = None


_INSTANCES: weakref.WeakSet[SandboxedImageSanitizer] = weakref.WeakSet()
_ABANDONED: list[subprocess.Popen[bytes]] = []
"""Children inherited through a fork: their parent is the process that started them, not us."""


def _after_fork_in_child() -> None:
    for sandbox in list(_INSTANCES):
        sandbox._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _outcome(kind: int, body: bytes, pid: int) -> SanitizedImage:
    """The sanitised image, or the refusal, from a reply body (checked: the child may be compromised)."""
    if kind == _OUT_OF_MEMORY:
        raise _OutOfMemory
    try:
        if kind == _RESULT_OK:
            return _decoded_result(body)
        if kind == _REJECTED:
            code_length = body[0]
            code = body[1 : 1 + code_length].decode("ascii")
            if code in _PORT_CODES:
                raise ContentRejected(_printable(body[1 + code_length :]), code=code)
        elif kind == _FAILED:
            failure = _printable(body)
            log.warning("image sanitiser child %d failed with %s", pid, failure)
            raise ContentRejected("the image could not be decoded", code="not_an_image")
    except (ValueError, IndexError, struct.error):
        pass
    raise _BadReply(f"a malformed reply of kind {kind}")


def _printable(text: bytes) -> str:
    decoded = text.decode("utf-8", "replace")[:_MAX_DETAIL_CHARS]
    return "".join(character if character.isprintable() else "?" for character in decoded)


def _decoded_result(body: bytes) -> SanitizedImage:
    width, height, preview_width, preview_height, type_length, data_length = _RESULT.unpack_from(body)
    start = _RESULT.size
    content_type = body[start : start + type_length].decode("ascii")
    start += type_length
    data = body[start : start + data_length]
    rgb = body[start + data_length :]
    if len(data) != data_length or len(rgb) != preview_width * preview_height * 3:
        raise ValueError("inconsistent lengths")
    if not (content_type.isprintable() and content_type.count("/") == 1):
        raise ValueError("not a media type")
    preview = Pixels(width=preview_width, height=preview_height, rgb=rgb)
    return SanitizedImage(data=data, content_type=content_type, width=width, height=height, preview=preview)


def _describe(status: int | None) -> str:
    if status is None:
        return "still running"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


class _Worker:
    """One child process and the parent's ends of its two pipes (non-blocking, waited on with poll)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._owner = os.getpid()
        self.pid = process.pid
        self.ready = False
        self._to_child = process.stdin.fileno()
        self._from_child = process.stdout.fileno()
        for fd in (self._to_child, self._from_child):
            os.set_blocking(fd, False)
            with contextlib.suppress(OSError):  # fewer wake-ups per image; the default 64 KiB works too
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)

    @classmethod
    def spawn(cls) -> _Worker:
        if not sys.executable:
            raise OSError("no Python interpreter to start the child with (sys.executable is empty)")
        environment = {name: os.environ[name] for name in _CHILD_ENVIRONMENT if name in os.environ}
        environment["MALLOC_ARENA_MAX"] = "1"  # see DEFAULT_ADDRESS_SPACE_BYTES
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and code, no shell
            [sys.executable, "-I", "-c", _CHILD_BOOT, json.dumps(sys.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            close_fds=True,
            start_new_session=True,
            bufsize=0,
        )
        return cls(process)

    def handshake(self, config: bytes, deadline: float) -> None:
        self._write([_CONFIG_LEN.pack(len(config)), config], deadline)
        nonce, kind, length = _REPLY.unpack(self._read(_REPLY.size, deadline))
        if (nonce, kind, length) != (_READY_NONCE, _READY, 0):
            raise _BadReply("no ready signal")
        self.ready = True

    def call(
        self, nonce: bytes, declared_type: str, data: bytes, deadline: float, max_result_bytes: int
    ) -> tuple[int, bytes]:
        encoded_type = declared_type.encode("utf-8", "replace")[:1024]
        self._write([_REQUEST.pack(nonce, len(encoded_type), len(data)), encoded_type, data], deadline)
        echoed, kind, length = _REPLY.unpack(self._read(_REPLY.size, deadline))
        if echoed != nonce:
            raise _BadReply("a reply to another request")
        if length > max_result_bytes:
            raise _BadReply(f"a {length}-byte reply, over {max_result_bytes}", code="image_too_large")
        return kind, bytes(self._read(length, deadline))

    @property
    def owned(self) -> bool:
        """False in a forked copy of the process that started the child."""
        return os.getpid() == self._owner

    def exited(self) -> bool:
        return not self.owned or self._process.poll() is not None

    def kill(self) -> int | None:
        """SIGKILL and reap; the exit status (negative: the signal), or None if it could not be reaped."""
        if not self.owned:
            self.abandon()
            return None
        self._close_pipes()
        try:
            self._process.kill()
            return self._process.wait(timeout=_REAP_SECONDS)
        except subprocess.TimeoutExpired:
            log.error("image sanitiser child %d did not die within %g s of SIGKILL", self.pid, _REAP_SECONDS)
            return None

    def stop(self) -> None:
        """EOF on its request pipe lets an idle child exit by itself; one that lingers is killed."""
        if not self.owned:
            self.abandon()
            return
        self._close_pipes()
        try:
            self._process.wait(timeout=_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()

    def abandon(self) -> None:
        """In a forked copy of the parent: close our copies of the pipes, leave the child to its parent."""
        self._close_pipes()
        _ABANDONED.append(self._process)

    def _close_pipes(self) -> None:
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()

    def _write(self, chunks: Sequence[bytes], deadline: float) -> None:
        for chunk in chunks:
            with memoryview(chunk) as view:
                written = 0
                while written < len(view):
                    _wait(self._to_child, select.POLLOUT, deadline)
                    try:
                        written += os.write(self._to_child, view[written:])
                    except BlockingIOError:
                        continue
                    except (BrokenPipeError, ConnectionResetError):
                        raise _ChildGone from None

    def _read(self, size: int, deadline: float) -> bytearray:
        buffer = bytearray(size)
        with memoryview(buffer) as view:
            got = 0
            while got < size:
                _wait(self._from_child, select.POLLIN, deadline)
                try:
                    count = os.readv(self._from_child, [view[got:]])
                except BlockingIOError:
                    continue
                if count == 0:
                    raise _ChildGone
                got += count
        return buffer


def _wait(fd: int, events: int, deadline: float) -> None:
    """Until ``fd`` is ready (or hung up: the read or write that follows says so), or the deadline passes."""
    poller = select.poll()
    poller.register(fd, events)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _OutOfTime
        if poller.poll(math.ceil(remaining * 1000)):
            return


# --- the child ------------------------------------------------------------------------------------


def _child_main() -> None:
    """The child's whole life: limits, handshake, then one image per request until the parent closes the pipe.

    Runs in a fresh interpreter started by ``_Worker.spawn``; never call it anywhere else.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests, replies = os.dup(0), os.dup(1)
    quiet = os.open(os.devnull, os.O_RDWR)
    os.dup2(quiet, 0)
    os.dup2(2, 1)  # stray prints go to stderr, never into the reply pipe
    os.close(quiet)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    (config_length,) = _CONFIG_LEN.unpack(_child_read(requests, _CONFIG_LEN.size))
    config = pickle.loads(_child_read(requests, config_length))  # noqa: S301 - from the parent
    assert isinstance(config, _Config)
    _set_limit(resource.RLIMIT_AS, config.address_space_bytes)
    inner = pickle.loads(config.inner)  # noqa: S301 - the parent's own sanitizer
    _watch_parent(os.getppid())
    _child_send(replies, _READY_NONCE, _READY, [])
    while True:
        header = _child_read(requests, _REQUEST.size, eof_ok=True)
        if not header:
            return
        nonce, type_length, data_length = _REQUEST.unpack(header)
        if data_length > _MAX_REQUEST_BYTES:
            os._exit(2)
        declared_type = _child_read(requests, type_length).decode("utf-8", "replace")
        data = _child_read(requests, data_length)
        used = resource.getrusage(resource.RUSAGE_SELF)
        _set_limit(
            resource.RLIMIT_CPU, math.ceil(used.ru_utime + used.ru_stime) + config.cpu_seconds, soft_only=True
        )
        _child_answer(replies, nonce, inner, data, declared_type)
        del data


def _child_answer(replies: int, nonce: bytes, inner: ImageSanitizer, data: bytes, declared_type: str) -> None:
    try:
        result = inner.sanitize(data, declared_type)
    except ContentRejected as refused:
        code = refused.code.encode("ascii", "replace")[:_MAX_CODE_CHARS]
        detail = refused.detail.encode("utf-8", "replace")[: _MAX_DETAIL_CHARS * 4]
        _child_send(replies, nonce, _REJECTED, [bytes([len(code)]), code, detail])
    except MemoryError:
        del data
        try:
            _child_send(replies, nonce, _OUT_OF_MEMORY, [])
        finally:
            os._exit(3)  # a failed allocation may have left a decoder in any state: the parent starts afresh
    except Exception as failed:
        _child_send(replies, nonce, _FAILED, [type(failed).__qualname__.encode("utf-8", "replace")])
    else:
        content_type = result.content_type.encode("ascii", "replace")[:255]
        preview = result.preview
        header = _RESULT.pack(
            result.width, result.height, preview.width, preview.height, len(content_type), len(result.data)
        )
        _child_send(replies, nonce, _RESULT_OK, [header, content_type, result.data, preview.rgb])


def _set_limit(which: int, value: int, *, soft_only: bool = False) -> None:
    """Soft (and, unless ``soft_only``, hard) limit ``value``, within the hard limit we inherited."""
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, hard if soft_only else value))


def _watch_parent(parent: int) -> None:
    """Exit when the parent is gone (re-parented), even mid-image: nobody is waiting for the answer."""

    def watch() -> None:
        while True:
            time.sleep(_ORPHAN_POLL_SECONDS)
            if os.getppid() != parent:
                os._exit(4)

    threading.stack_size(_WATCH_STACK_BYTES)
    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()
    threading.stack_size(0)


def _child_read(fd: int, size: int, *, eof_ok: bool = False) -> bytes:
    buffer = bytearray(size)
    with memoryview(buffer) as view:
        got = 0
        while got < size:
            count = os.readv(fd, [view[got:]])
            if count == 0:
                if eof_ok and got == 0:
                    return b""
                os._exit(0)  # the parent went away mid-request
            got += count
    return bytes(buffer)


def _child_send(fd: int, nonce: bytes, kind: int, parts: list[bytes]) -> None:
    body_length = sum(len(part) for part in parts)
    for chunk in [_REPLY.pack(nonce, kind, body_length), *parts]:
        with memoryview(chunk) as view:
            written = 0
            while written < len(view):
                written += os.write(fd, view[written:])
