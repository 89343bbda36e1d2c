"""Pillow (with pillow-heif for HEIC/HEIF) behind the ImageSanitizer port."""

from adapters.pillow_images.sanitizer import PillowImageSanitizer

__all__ = ["PillowImageSanitizer"]
