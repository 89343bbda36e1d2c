"""A 12 MP (4032 x 3024) phone-like JPEG of a face, made in memory from the one-face test fixture.

How it is made (so the figures can be reproduced and judged):

- the background fills the whole 4:3 frame: the 512 x 512 fixture squeezed to 64 x 48 and blown up to
  4032 x 3024 (bicubic), i.e. a heavily blurred, stretched copy of the same photo, so the side bands hold
  colours from the picture and no second face;
- the face: the fixture upscaled to 3024 x 3024 (Lanczos), pasted centred (504 px bands left and right);
- ``grain``: Gaussian noise of that sigma (in 8-bit levels, the same on R, G and B) added over the whole
  frame, like a phone sensor's. An upscaled 512 px image is so smooth that it compresses to ~1 MB; with
  the default sigma 4 it is ~3 MB, what a 12 MP phone JPEG weighs, and a JPEG decoder's work grows with
  the bytes it has to entropy-decode. ``grain=0`` leaves it out;
- saved at JPEG quality 92 with EXIF like a phone's: Orientation 1, Make/Model, and a GPS position.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageChops
from PIL.TiffImagePlugin import IFDRational

ROOT = Path(__file__).resolve().parents[1]
ONE_FACE = ROOT / "tests" / "fixtures" / "images" / "one_face.jpg"
WIDTH, HEIGHT = 4032, 3024
JPEG_QUALITY = 92
DEFAULT_GRAIN = 4.0

_ORIENTATION, _MAKE, _MODEL, _GPS_IFD = 0x0112, 0x010F, 0x0110, 0x8825
_GPS_LATITUDE_REF, _GPS_LATITUDE, _GPS_LONGITUDE_REF, _GPS_LONGITUDE = 1, 2, 3, 4


def twelve_megapixel_selfie(grain: float = DEFAULT_GRAIN) -> bytes:
    with Image.open(ONE_FACE) as opened:
        face = opened.convert("RGB")
    frame = face.resize((64, 48), Image.Resampling.BILINEAR).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    frame.paste(face.resize((HEIGHT, HEIGHT), Image.Resampling.LANCZOS), ((WIDTH - HEIGHT) // 2, 0))
    if grain > 0:
        noise = Image.effect_noise((WIDTH, HEIGHT), grain)  # "L", centred on 128
        frame = ImageChops.add(frame, Image.merge("RGB", (noise, noise, noise)), scale=1.0, offset=-128)
    encoded = io.BytesIO()
    frame.save(encoded, format="JPEG", quality=JPEG_QUALITY, exif=_phone_exif())
    return encoded.getvalue()


def _phone_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[_ORIENTATION] = 1
    exif[_MAKE] = "BenchPhone"
    exif[_MODEL] = "BenchPhone 12"
    gps = exif.get_ifd(_GPS_IFD)
    gps[_GPS_LATITUDE_REF] = "N"
    gps[_GPS_LATITUDE] = (IFDRational(52), IFDRational(31), IFDRational(1234, 100))
    gps[_GPS_LONGITUDE_REF] = "E"
    gps[_GPS_LONGITUDE] = (IFDRational(13), IFDRational(24), IFDRational(5))
    return exif
