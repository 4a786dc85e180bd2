"""Decode any image file into an RGB PIL image, or say in one line why it cannot be used.

Real photo folders hold everything: empty files, half-downloaded JPEGs, HTML saved as `.jpg`, CMYK
print scans, transparent PNGs, palette GIFs, 16-bit greyscale scans, phone photos rotated by EXIF, and images
too big to decode. `load_rgb` turns the usable ones into plain RGB and returns a reason for the rest; it
never raises for a bad file, so one bad file never stops a run.

Truncated files are refused, not padded with grey: this module never sets `ImageFile.LOAD_TRUNCATED_IMAGES`
(if some other code sets it globally, Pillow then fills the missing part and the file is accepted).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 4096 * 4096
"""Largest image `load_rgb` returns; bigger ones are downscaled (JPEGs already while decoding)."""
DECODE_BUDGET = 8192 * 8192
"""Most pixels `load_rgb` decodes, checked on the header before any decoding (a JPEG counts at the 1/8 scale
its decoder can draft to); an image over it is refused: a small file can declare a huge image."""

_WHITE = (255, 255, 255)
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WIDE_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def load_rgb(
    path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Image.Image | None, str | None]:
    """Return `(rgb_image, None)` or `(None, reason)`; never raises for a bad or missing file.

    The image is EXIF-rotated; CMYK, palette, greyscale, 16-bit and float modes become 8-bit RGB; transparency
    is composited on white; images over `max_pixels` are downscaled to fit, keeping the aspect ratio.
    Images that would decode to more than `DECODE_BUDGET` pixels are refused from their header, unread.
    """
    try:
        size = os.path.getsize(path)
    except OSError as err:
        return None, f"cannot read file: {err.strerror or err}"
    if size == 0:
        return None, "empty file (zero bytes)"
    return _decode(path, max_pixels)


def load_rgb_bytes(
    data: bytes | None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Image.Image | None, str | None]:
    """`load_rgb` for an image held in memory (e.g. a Hugging Face dataset's image bytes)."""
    if not data:
        return None, "empty image (zero bytes)"
    return _decode(io.BytesIO(data), max_pixels)


def _decode(
    source: str | os.PathLike[str] | io.BytesIO, max_pixels: int
) -> tuple[Image.Image | None, str | None]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                over = _over_budget(im)
                if over:
                    return None, over
                _draft_if_huge(im, max_pixels)
                im.load()
                rgb = to_rgb(_exif_upright(im))
                return _fit_pixels(rgb, max_pixels), None
    except UnidentifiedImageError:
        return None, "not an image (unrecognised format)"
    except Image.DecompressionBombError as err:
        return None, f"too large to decode safely ({err})"
    except OSError as err:
        message = str(err)
        if "truncated" in message.lower() or "broken data stream" in message:
            return None, f"truncated image ({message})"
        return None, f"unreadable image ({message})"
    except MemoryError:
        return None, "too large to decode (out of memory)"
    except Exception as err:  # Pillow raises assorted errors (SyntaxError, ValueError, struct.error)
        return None, f"unreadable image ({type(err).__name__}: {err})"


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparent pixels become white."""
    if im.mode == "RGB" and "transparency" not in im.info:
        return im
    if im.mode in _WIDE_MODES:
        return Image.fromarray(_to_uint8(np.asarray(im))).convert("RGB")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Map 16-bit (or wider int, or float) pixel values onto 0..255."""
    values = values.astype(np.float64)
    top = float(values.max()) if values.size else 0.0
    if top > 255.0:
        values = values / 257.0 if top <= 65535.0 else values * (255.0 / top)
    elif 0.0 < top <= 1.0 and np.issubdtype(values.dtype, np.floating):
        values = values * 255.0  # float images in 0..1
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _exif_upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, in place (most photos have none, and a copy of each cost a fifth of
    decoding a 256 px PNG); a malformed EXIF block leaves the image as stored."""
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(im, in_place=True)
    return im


def _over_budget(im: Image.Image, budget: int = DECODE_BUDGET) -> str | None:
    """Why the image is refused unread, or None: its header's size against the decoding budget."""
    width, height = im.size
    decoded = width * height // (64 if im.format == "JPEG" else 1)  # JPEG: drafted at 1/8 scale at most
    if decoded <= budget:
        return None
    return f"too large to decode safely ({width}x{height} pixels; the decoding budget is {budget} pixels)"


def _draft_if_huge(im: Image.Image, max_pixels: int) -> None:
    """Ask the JPEG decoder to decode at 1/2, 1/4 or 1/8 scale when the full image is over the limit."""
    width, height = im.size
    if width * height <= max_pixels or im.format != "JPEG":
        return
    scale = math.sqrt(max_pixels / (width * height))
    im.draft(None, (max(1, int(width * scale)), max(1, int(height * scale))))


def _fit_pixels(im: Image.Image, max_pixels: int) -> Image.Image:
    """Downscale so width x height <= max_pixels."""
    width, height = im.size
    if width * height <= max_pixels:
        return im
    scale = math.sqrt(max_pixels / (width * height))
    new_size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
    return im.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=2.0)
