"""What the domain needs from an image-generation service (fal.ai's queue API), as values and a port."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from domain.model import SignedUrl


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    image_url: SignedUrl = field(repr=False)
    num_images: int = 1
    output_format: str = "jpeg"
    start_deadline_seconds: int = 240
    """fal must start the job within this (it downloads the image then), or give up: keep it below
    the signed URL's remaining life."""


@dataclass(frozen=True)
class Submission:
    """A job accepted by the queue. The URLs carry no secret but are only ever used with our key."""

    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"  # fal says COMPLETED for failures too: only the result tells


@dataclass(frozen=True)
class GeneratedImage:
    url: str = field(repr=False)
    content_type: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class DownloadedImage:
    data: bytes = field(repr=False)
    content_type: str


class ImageGenerator(Protocol):
    """Every method raises GenerationFailed (with ``retryable``) on a failure it understands."""

    def submit(self, request: GenerationRequest) -> Submission: ...

    def state(self, submission: Submission) -> JobState: ...

    def result(self, submission: Submission) -> list[GeneratedImage]: ...

    def cancel(self, submission: Submission) -> None: ...

    def download(self, image: GeneratedImage, max_bytes: int) -> DownloadedImage:
        """Fetch an output, only from the allowed result hosts, at most ``max_bytes``, type sniffed."""
        ...
