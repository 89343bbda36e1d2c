"""The sanitiser in a child process: same results as in-process, and no image costs more than one budget.

The child runs ``tests.sandbox_fakes.Scripted`` (it does what the image bytes say: sleep, spin, hog memory,
exit, segfault, refuse, raise) or the real ``PillowImageSanitizer``. Budgets are a second or two.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pillow_heif
import pytest
from PIL import Image

from adapters.pillow_images import PillowImageSanitizer, SandboxedImageSanitizer, SandboxUnavailable
from adapters.pillow_images import sandbox as sandbox_module
from domain.errors import ContentRejected, DependencyUnavailable
from domain.model import Pixels, SanitizedImage
from tests.sandbox_fakes import SECRET_IN_EXCEPTION, Scripted, report

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "tests" / "fixtures" / "images"
MiB = 1024 * 1024
BUDGET = 1.0
MARGIN = 0.75  # SIGKILL, reaping and starting the successor (without waiting for it)
LOGGER = "adapters.pillow_images.sandbox"


@pytest.fixture
def sandboxes() -> Iterator[list[SandboxedImageSanitizer]]:
    made: list[SandboxedImageSanitizer] = []
    yield made
    for sandbox in made:
        sandbox.close()


@pytest.fixture
def scripted(sandboxes: list[SandboxedImageSanitizer]) -> SandboxedImageSanitizer:
    sandbox = SandboxedImageSanitizer(Scripted(), budget_seconds=BUDGET, address_space_bytes=512 * MiB)
    sandboxes.append(sandbox)
    sandbox.start()
    return sandbox


def refused(sandbox: SandboxedImageSanitizer, data: bytes) -> tuple[ContentRejected, float]:
    started = time.monotonic()
    with pytest.raises(ContentRejected) as caught:
        sandbox.sanitize(data, "image/jpeg")
    return caught.value, time.monotonic() - started


def heic(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=80)
    return buffer.getvalue()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- the same result as in-process ----------------------------------------------------------------


def test_a_real_selfie_comes_back_exactly_as_the_in_process_sanitiser_makes_it(sandboxes):
    inner = PillowImageSanitizer()
    sandbox = SandboxedImageSanitizer(inner)
    sandboxes.append(sandbox)
    with Image.open(IMAGES / "one_face.jpg") as face:
        translucent = face.convert("RGBA").resize((96, 72))
        translucent.putalpha(128)
        small = face.convert("RGB").resize((64, 48))
    cases = [
        ((ROOT / "samples" / "selfie.jpg").read_bytes(), "image/jpeg"),
        ((IMAGES / "rotated_exif_gps.jpg").read_bytes(), "image/jpeg"),  # turned upright, metadata gone
        (png(translucent), "image/png"),
        (heic(small), "image/heic"),
    ]
    for data, declared_type in cases:
        sandboxed = sandbox.sanitize(data, declared_type)
        assert sandboxed == inner.sanitize(data, declared_type)
        assert sandboxed.preview.rgb == inner.sanitize(data, declared_type).preview.rgb
        assert len(sandboxed.preview.rgb) == sandboxed.preview.width * sandboxed.preview.height * 3


def test_the_inner_sanitisers_refusals_come_back_with_their_code_and_the_child_stays(sandboxes):
    sandbox = SandboxedImageSanitizer(PillowImageSanitizer())
    sandboxes.append(sandbox)
    png_bytes = png(Image.effect_noise((64, 64), 64).convert("RGB"))
    for data, declared_type, code in [
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/png", "not_an_image"),
        (png_bytes, "image/jpeg", "content_type_mismatch"),
        (png_bytes[: len(png_bytes) // 2], "image/png", "not_an_image"),  # truncated
    ]:
        with pytest.raises(ContentRejected) as caught:
            sandbox.sanitize(data, declared_type)
        with pytest.raises(ContentRejected) as direct:
            PillowImageSanitizer().sanitize(data, declared_type)
        assert (caught.value.code, caught.value.detail) == (code, direct.value.detail)
    first = sandbox.child_pid
    sandbox.sanitize(png_bytes, "image/png")
    assert sandbox.child_pid == first


def test_a_scripted_refusal_keeps_its_code_and_detail(scripted):
    pid = scripted.child_pid
    error, _ = refused(scripted, b"refuse:content_type_mismatch")
    assert type(error) is ContentRejected
    assert (error.code, error.detail) == ("content_type_mismatch", "refused as content_type_mismatch")
    assert scripted.child_pid == pid


# --- a fresh interpreter, never the parent -------------------------------------------------------


def test_the_child_is_a_fresh_interpreter_without_what_the_parent_loaded(scripted, tmp_path, monkeypatch):
    (tmp_path / "heavy_stand_in_for_tensorflow.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FAKE_FAL_KEY", "must-not-reach-the-child")
    importlib.import_module("heavy_stand_in_for_tensorflow")  # the parent loads its "model" after start()

    assert "heavy_stand_in_for_tensorflow" in sys.modules
    first = report(scripted.sanitize(b"report", "image/jpeg"))
    assert first["pid"] == scripted.child_pid != os.getpid()
    assert first["ppid"] == os.getpid()

    os.kill(scripted.child_pid, signal.SIGKILL)  # dies while idle: replaced before the next image, silently
    time.sleep(0.1)
    second = report(scripted.sanitize(b"report", "image/jpeg"))
    assert second["pid"] != first["pid"]
    for seen in (first, second):  # the replacement too: started after the parent loaded the marker
        modules = set(seen["modules"])
        assert "heavy_stand_in_for_tensorflow" not in modules
        assert not {name for name in modules if name.split(".")[0] in {"tensorflow", "mtcnn", "keras"}}
        assert "PIL.Image" in modules  # what the child is for is loaded up front
        assert "FAKE_FAL_KEY" not in seen["environment"]
        assert "MALLOC_ARENA_MAX" in seen["environment"]


def test_without_start_the_first_image_starts_the_child_and_close_ends_it(sandboxes):
    sandbox = SandboxedImageSanitizer(Scripted(), budget_seconds=BUDGET)
    sandboxes.append(sandbox)
    assert sandbox.child_pid is None
    pid = report(sandbox.sanitize(b"report", "image/jpeg"))["pid"]
    assert sandbox.child_pid == pid
    sandbox.close()
    assert sandbox.child_pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone and reaped
    assert report(sandbox.sanitize(b"report", "image/jpeg"))["pid"] != pid


# --- the budget ------------------------------------------------------------------------------------


def test_an_image_that_never_finishes_is_refused_within_the_budget_and_the_child_replaced(scripted, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    pid = scripted.child_pid
    error, elapsed = refused(scripted, b"sleep")
    assert error.code == "image_too_large"
    assert "budget" in error.detail
    assert BUDGET <= elapsed < BUDGET + MARGIN
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # SIGKILLed and reaped
    [warning] = [record for record in caplog.records if record.name == LOGGER]
    assert warning.levelno == logging.WARNING
    assert "budget" in warning.getMessage() and f"{elapsed:.1f}"[:2] in warning.getMessage()
    assert "sleep" not in warning.getMessage()  # nothing of the image

    started = time.monotonic()
    after = report(scripted.sanitize(b"report", "image/jpeg"))
    assert after["pid"] != pid
    assert time.monotonic() - started < 5


def test_the_budget_stops_a_real_decode_too(sandboxes):
    image = Image.linear_gradient("L").resize((3000, 3000)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", progressive=True, quality=95)
    data = buffer.getvalue()
    hurried = SandboxedImageSanitizer(PillowImageSanitizer(), budget_seconds=0.005)
    sandboxes.append(hurried)
    hurried.start()
    error, elapsed = refused(hurried, data)
    assert error.code == "image_too_large"
    assert elapsed < 0.005 + MARGIN
    relaxed = SandboxedImageSanitizer(PillowImageSanitizer(), budget_seconds=30)
    sandboxes.append(relaxed)
    assert relaxed.sanitize(data, "image/jpeg").width == 2048


def test_a_busy_loop_is_stopped_by_the_childs_cpu_limit_even_with_a_long_budget(sandboxes, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    sandbox = SandboxedImageSanitizer(Scripted(), budget_seconds=30, cpu_seconds=1)
    sandboxes.append(sandbox)
    sandbox.start()
    error, elapsed = refused(sandbox, b"spin")
    assert error.code == "image_too_large"
    assert elapsed < 5  # RLIMIT_CPU (one more CPU second), not the 30 s budget
    assert any("SIGXCPU" in record.getMessage() for record in caplog.records)
    report(sandbox.sanitize(b"report", "image/jpeg"))


# --- a child that dies -----------------------------------------------------------------------------


def test_an_allocation_past_the_address_space_cap_is_refused_as_too_large(scripted):
    pid = scripted.child_pid
    error, elapsed = refused(scripted, b"hog")
    assert error.code == "image_too_large"
    assert elapsed < BUDGET
    after = report(scripted.sanitize(b"report", "image/jpeg"))
    assert after["pid"] != pid  # never reused after a failed allocation


@pytest.mark.parametrize(("script", "cause"), [(b"exit", "exit status 7"), (b"segfault", "SIGSEGV")])
def test_a_child_that_exits_or_crashes_mid_image_is_refused_as_too_large(scripted, caplog, script, cause):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    pid = scripted.child_pid
    error, elapsed = refused(scripted, script)
    assert type(error) is ContentRejected
    assert error.code == "image_too_large"
    assert elapsed < BUDGET
    assert any(cause in record.getMessage() for record in caplog.records)
    assert report(scripted.sanitize(b"report", "image/jpeg"))["pid"] != pid


def test_any_other_exception_in_the_child_is_refused_as_not_an_image_without_its_text(scripted, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    pid = scripted.child_pid
    error, _ = refused(scripted, b"raise")
    assert error.code == "not_an_image"
    assert SECRET_IN_EXCEPTION not in error.detail
    assert SECRET_IN_EXCEPTION not in caplog.text and "ValueError" in caplog.text
    assert scripted.child_pid == pid  # a Python exception leaves the child usable


def test_a_reply_over_the_size_bound_is_refused_and_the_child_replaced(sandboxes):
    sandbox = SandboxedImageSanitizer(Scripted(), budget_seconds=BUDGET, max_result_bytes=MiB)
    sandboxes.append(sandbox)
    assert len(sandbox.sanitize(b"big:1000000", "image/jpeg").data) == 1_000_000
    pid = sandbox.child_pid
    error, _ = refused(sandbox, b"big:2000000")
    assert error.code == "image_too_large"
    assert sandbox.child_pid != pid


def test_what_the_inner_sanitiser_prints_does_not_reach_the_reply_pipe(scripted):
    assert report(scripted.sanitize(b"print", "image/jpeg"))["declared_type"] == "image/jpeg"


def test_the_child_ignores_a_shutdown_signal_so_a_good_image_is_not_refused_for_it(scripted):
    pid = scripted.child_pid
    threading.Timer(0.2, os.kill, (pid, signal.SIGTERM)).start()
    assert report(scripted.sanitize(b"timed:0.5", "image/jpeg"))["pid"] == pid


def test_a_child_whose_parent_died_mid_image_exits_by_itself(tmp_path):
    script = f"""
import os, sys, threading, time
sys.path[:0] = [{str(ROOT)!r}]
from adapters.pillow_images import SandboxedImageSanitizer
from tests.sandbox_fakes import Scripted
sandbox = SandboxedImageSanitizer(Scripted(), budget_seconds=60)
sandbox.start()
print(sandbox.child_pid, flush=True)
threading.Thread(target=sandbox.sanitize, args=(b"sleep", "image/jpeg"), daemon=True).start()
time.sleep(0.3)
os._exit(0)
"""
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30, check=True)
    orphan = int(parent.stdout)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and alive(orphan):
        time.sleep(0.1)
    assert not alive(orphan)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in {"Z", "X"}


# --- replies are checked, not trusted -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (99, b""),  # no such kind
        (sandbox_module._READY, b""),  # a handshake where an answer belongs
        (sandbox_module._RESULT_OK, b"\x00" * 5),  # shorter than its header
        (
            sandbox_module._RESULT_OK,
            sandbox_module._RESULT.pack(2, 1, 2, 1, 10, 3) + b"image/jpegabc" + b"12345",
        ),
        (sandbox_module._RESULT_OK, sandbox_module._RESULT.pack(2, 1, 2, 1, 4, 0) + b"\xff\xfe\xfd\xfc"),
        (sandbox_module._REJECTED, b""),
        (sandbox_module._REJECTED, b"\x05a b;c"),  # not a code
        (sandbox_module._REJECTED, b"\x00detail"),
        (sandbox_module._REJECTED, b"\x08verifieddetail"),  # an identifier, but no code of the port's
    ],
)
def test_a_malformed_reply_is_out_of_protocol(kind, body):
    with pytest.raises(sandbox_module._BadReply):
        sandbox_module._outcome(kind, body, 1)


def test_a_refusals_detail_from_the_child_is_printable_text():
    body = b"\x0cnot_an_image" + b"broken\n\x1b[31m\xff"
    with pytest.raises(ContentRejected) as caught:
        sandbox_module._outcome(sandbox_module._REJECTED, body, 1)
    assert (caught.value.code, caught.value.detail) == ("not_an_image", "broken??[31m\ufffd")


def test_a_code_the_port_does_not_know_is_refused_as_not_an_image_and_the_child_replaced(scripted):
    pid = scripted.child_pid
    error, _ = refused(scripted, b"refuse:verified")
    assert error.code == "not_an_image"
    assert scripted.child_pid != pid


def test_a_well_formed_reply_comes_back_intact():
    rgb = bytes(range(6))
    body = sandbox_module._RESULT.pack(3, 2, 2, 1, 10, 4) + b"image/jpeg" + b"\xff\xd8\xff\xd9" + rgb
    image = sandbox_module._outcome(sandbox_module._RESULT_OK, body, 1)
    assert image == SanitizedImage(b"\xff\xd8\xff\xd9", "image/jpeg", 3, 2, Pixels(2, 1, rgb))


# --- concurrency, forks, start-up ------------------------------------------------------------------


def test_calls_from_two_threads_are_serialised_on_one_child(scripted):
    results: list[dict[str, Any]] = []

    def call() -> None:
        results.append(report(scripted.sanitize(b"timed:0.3", "image/jpeg")))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = sorted(results, key=lambda result: result["started"])
    assert first["pid"] == second["pid"] == scripted.child_pid
    assert first["ended"] <= second["started"]


def test_a_forked_copy_of_the_parent_starts_a_child_of_its_own(scripted):
    parents_child = scripted.child_pid
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked copy reports through the pipe and exits
        status = 1
        try:
            seen = report(scripted.sanitize(b"report", "image/jpeg"))
            os.write(write_end, f"{seen['pid']} {seen['ppid']} {os.getpid()}".encode())
            scripted.close()
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as answer:
        child, its_parent, forked = (int(field) for field in answer.read().split())
    assert os.waitstatus_to_exitcode(status) == 0
    assert its_parent == forked and child != parents_child
    assert report(scripted.sanitize(b"report", "image/jpeg"))["pid"] == parents_child  # ours untouched


def test_a_child_that_cannot_start_is_a_dependency_failure_not_a_refusal(sandboxes):
    starved = SandboxedImageSanitizer(Scripted(), address_space_bytes=16 * MiB, startup_timeout_seconds=10)
    sandboxes.append(starved)
    with pytest.raises(SandboxUnavailable) as caught:
        starved.sanitize(b"report", "image/jpeg")
    assert isinstance(caught.value, DependencyUnavailable) and not isinstance(caught.value, ContentRejected)
    assert caught.value.retryable


def test_an_inner_sanitiser_that_cannot_pickle_is_refused_at_construction():
    class Local(Scripted):
        pass

    with pytest.raises(TypeError, match="pickle"):
        SandboxedImageSanitizer(Local())
