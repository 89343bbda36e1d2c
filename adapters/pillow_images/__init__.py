"""Pillow (with pillow-heif for HEIC/HEIF) behind the ImageSanitizer port, and a child process to run it."""

from adapters.pillow_images.sandbox import SandboxedImageSanitizer, SandboxUnavailable
from adapters.pillow_images.sanitizer import PillowImageSanitizer

__all__ = ["PillowImageSanitizer", "SandboxUnavailable", "SandboxedImageSanitizer"]
