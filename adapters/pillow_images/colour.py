"""Pixel modes and colour: everything becomes 8-bit sRGB without alpha before it is stored."""

from __future__ import annotations

import io

from PIL import Image, ImageCms

_WHITE = (255, 255, 255)


def flattened(image: Image.Image) -> Image.Image:
    """RGB, L or CMYK (the modes an ICC transform and the resampler take); alpha composited onto white."""
    if image.mode in ("RGB", "L", "CMYK") and "transparency" not in image.info:
        return image
    if image.mode.startswith("I"):  # 16-bit greyscale PNG: scale to 8 bits instead of clipping
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, _WHITE)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def in_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Colours converted from the embedded profile to sRGB; best effort (a bad profile is just dropped).

    A profile that calls itself sRGB is taken at its word: converting would cost ~50 ms for no change.
    """
    converted = None
    if icc_profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            if image.mode != "RGB" or "srgb" not in ImageCms.getProfileDescription(source).lower():
                srgb = ImageCms.createProfile("sRGB")
                converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            converted = None
    if converted is None:
        converted = image if image.mode == "RGB" else image.convert("RGB")
    return converted
