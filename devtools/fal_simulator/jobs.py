"""One simulated fal request: its arguments' validation, the input download, the "edit" and fal's errors.

Error bodies follow fal's two documented shapes: model errors are 422 ``{"detail": [{"loc", "msg", "type",
"url", ...}]}`` (https://docs.fal.ai/errors); infrastructure errors are ``{"detail": str, "error_type"}`` with
the same value in ``X-Fal-Error-Type`` (https://fal.ai/docs/documentation/model-apis/request-errors).
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import requests
from PIL import Image, ImageDraw, ImageFont

ERRORS_URL = "https://docs.fal.ai/errors#"
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
DEFAULT_OUTPUT_FORMAT = "png"  # nano-banana/edit's default
MAX_INPUT_BYTES = 25 * 1024 * 1024
MAX_OUTPUT_SIDE = 1024
DOWNLOAD_TIMEOUT_SECONDS = 10
TINTS = ((255, 0, 170), (0, 200, 255), (255, 200, 0), (0, 255, 120))


class JobState(Enum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: what GET response_url returns for a failed job, or any other reply."""

    status: int
    body: Any  # JSON-able, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)


def model_error(loc: list[str | int], msg: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_, "url": ERRORS_URL + type_, **extra}


def infrastructure_error(status: int, error_type: str, detail: str, **headers: str) -> Reply:
    return Reply(
        status, {"detail": detail, "error_type": error_type}, {"X-Fal-Error-Type": error_type, **headers}
    )


def file_download_error(index: int, url: str) -> Reply:
    msg = "Failed to download the file. Please check if the URL is accessible and points to a valid file."
    return Reply(
        422, {"detail": [model_error(["body", "image_urls", index], msg, "file_download_error", input=url)]}
    )


def content_policy_violation(prompt: str) -> Reply:
    msg = "The content could not be processed because it contained material flagged by a content checker."
    error = model_error(["body", "prompt"], msg, "content_policy_violation", input=prompt)
    return Reply(422, {"detail": [error]})


INTERNAL_ERROR = infrastructure_error(500, "internal_error", "Internal error")
CANCELLED = infrastructure_error(499, "client_cancelled", "The request was cancelled by the client")


def request_timeout() -> Reply:
    """The start deadline (``X-Fal-Request-Timeout``) passed; fal then adds ``X-Fal-Request-Timeout-Type``."""
    return infrastructure_error(
        504, "request_timeout", "Request timed out", **{"X-Fal-Request-Timeout-Type": "user"}
    )


def validation_errors(arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """The nano-banana/edit input schema, checked the way fal's pydantic models report it."""
    errors: list[dict[str, Any]] = []
    prompt = arguments.get("prompt")
    if "prompt" not in arguments:
        errors.append(model_error(["body", "prompt"], "Field required", "missing"))
    elif not isinstance(prompt, str):
        errors.append(model_error(["body", "prompt"], "Input should be a valid string", "string_type"))
    urls = arguments.get("image_urls")
    if "image_urls" not in arguments:
        errors.append(model_error(["body", "image_urls"], "Field required", "missing"))
    elif not isinstance(urls, list):
        errors.append(model_error(["body", "image_urls"], "Input should be a valid list", "list_type"))
    elif not urls:
        errors.append(model_error(["body", "image_urls"], "List should have at least 1 item", "too_short"))
    else:
        for index, url in enumerate(urls):
            if not isinstance(url, str):
                errors.append(
                    model_error(
                        ["body", "image_urls", index], "Input should be a valid string", "string_type"
                    )
                )
    count = arguments.get("num_images", 1)
    if not isinstance(count, int) or isinstance(count, bool):
        errors.append(model_error(["body", "num_images"], "Input should be a valid integer", "int_type"))
    elif not 1 <= count <= 4:
        bound = "greater than or equal to 1" if count < 1 else "less than or equal to 4"
        kind = "greater_than_equal" if count < 1 else "less_than_equal"
        errors.append(model_error(["body", "num_images"], f"Input should be {bound}", kind))
    if arguments.get("output_format", DEFAULT_OUTPUT_FORMAT) not in CONTENT_TYPES:
        msg = "Input should be 'jpeg', 'png' or 'webp'"
        errors.append(model_error(["body", "output_format"], msg, "literal_error"))
    return errors


@dataclass
class Job:
    request_id: str
    app: str  # "owner/alias": the status, result and cancel URLs leave out the endpoint path
    arguments: dict[str, Any]
    platform_headers: dict[str, str]  # the X-Fal-* headers of the submission, names lower-cased
    sequence: int
    submitted_at: float
    queue_seconds: float
    work_seconds: float
    start_timeout: float | None
    fault: str | None
    output_ttl: float | None
    state: JobState = JobState.IN_QUEUE
    result: dict[str, Any] | None = None
    failure: Reply | None = None
    inference_time: float | None = None
    completed_at: float | None = None  # time.monotonic() when it became COMPLETED
    cancel_requested: bool = False
    wake: threading.Event = field(default_factory=threading.Event)
    files: list[str] = field(default_factory=list)


class DownloadFailed(Exception):
    pass


def download_image(url: str) -> Image.Image:
    """Fetch and decode an input the way a fal runner does; anything short of an image is a failure."""
    try:
        with requests.get(url, timeout=DOWNLOAD_TIMEOUT_SECONDS, stream=True) as response:
            if not 200 <= response.status_code < 300:
                raise DownloadFailed(f"HTTP {response.status_code}")
            data = bytearray()
            for chunk in response.iter_content(64 * 1024):
                data += chunk
                if len(data) > MAX_INPUT_BYTES:
                    raise DownloadFailed("too large")
        image = Image.open(io.BytesIO(bytes(data)))
        image.load()
        return image
    except DownloadFailed:
        raise
    except Exception as error:  # requests, Pillow and decompression-bomb errors alike
        raise DownloadFailed(type(error).__name__) from error


def edit(source: Image.Image, index: int, output_format: str) -> tuple[bytes, int, int]:
    """A visibly different image: the input tinted, with "sim <n>" written on a dark band."""
    image = source.convert("RGB")
    image.thumbnail((MAX_OUTPUT_SIDE, MAX_OUTPUT_SIDE))
    image = Image.blend(image, Image.new("RGB", image.size, TINTS[index % len(TINTS)]), 0.4)
    width, height = image.size
    size = max(10, height // 8)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, size + 8), fill=(20, 20, 20))
    draw.text((4, 4), f"sim {index + 1}", fill=(255, 255, 255), font=ImageFont.load_default(size))
    buffer = io.BytesIO()
    image.save(buffer, format=output_format.upper())
    return buffer.getvalue(), width, height
