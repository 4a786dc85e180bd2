"""CLIP pixel values for a batch of decoded images: the image processor's output, bit for bit, for less CPU.

transformers' CLIP image processor (its PIL backend, the one that runs without torchvision) takes each image
through NumPy and PIL to resize and crop it, then rescales and normalizes it in floating point, one image at
a time: 3 to 5 ms of a core per 256 px photo, a fifth of an int8 ViT-B/32 forward on this machine's cores.
`pixel_values` keeps the processor's geometry (its own output size for the shortest edge, PIL's resampling,
the centre crop's offsets) but resizes and crops the 8-bit image in PIL, then looks each pixel up in a
table that the processor's own rescale and normalization made of the 256 values of each channel: the
processor's values exactly (tested), decoding included 2.2 against 4.5 ms an image (docs/BENCHMARKS.md).
Any setting outside that plan (no resize or crop, sizes by height and width, a crop larger than the resized
image, ...) runs the processor itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class _Plan:
    shortest_edge: int
    crop: tuple[int, int]  # height, width
    resample: int
    values: np.ndarray  # [3, 256] float32: the processor's output for each 8-bit value of each channel


def _setting(processor: Any, name: str) -> dict[str, int]:
    value = getattr(processor, name, None)
    return {k: v for k, v in dict(value or {}).items() if v is not None}


def _plan(processor: Any) -> _Plan | None:
    """The batched plan of `processor`, or None where it does something else than CLIP's recipe."""
    flags = ("do_resize", "do_center_crop", "do_rescale", "do_normalize")
    if not all(getattr(processor, flag, False) for flag in flags) or getattr(processor, "do_pad", False):
        return None
    size, crop = _setting(processor, "size"), _setting(processor, "crop_size")
    if set(size) != {"shortest_edge"} or set(crop) != {"height", "width"}:
        return None
    if max(crop["height"], crop["width"]) > size["shortest_edge"]:
        return None
    values = _value_table(processor)
    if values.shape != (3, 256):
        return None
    resample = getattr(processor, "resample", None)
    return _Plan(
        shortest_edge=int(size["shortest_edge"]),
        crop=(int(crop["height"]), int(crop["width"])),
        resample=int(Image.Resampling.BILINEAR if resample is None else resample),
        values=values,
    )


def _value_table(processor: Any) -> np.ndarray:
    """[3, 256]: what the processor's rescale and normalization make of every 8-bit value, per channel
    (the processor itself run on one row holding each value once)."""
    row = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # [1, 256, 3]
    out = processor(
        images=[Image.fromarray(row)], do_resize=False, do_center_crop=False, return_tensors="np"
    )["pixel_values"][0]
    return np.ascontiguousarray(out[:, 0, :], dtype=np.float32)  # [channels, 256]


def _resized_crop(image: Image.Image, plan: _Plan) -> np.ndarray:
    """[h, w, 3] uint8: the shortest edge resized as transformers sizes it, then the centre crop."""
    from transformers.image_transforms import convert_to_rgb, get_resize_output_image_size

    if image.mode != "RGB":  # as the processor converts (transparency onto white)
        image = Image.fromarray(convert_to_rgb(image, return_numpy=True))
    height, width = get_resize_output_image_size(
        np.empty((1, image.height, image.width), np.uint8),
        size=plan.shortest_edge,
        default_to_square=False,
        input_data_format="channels_first",
    )
    if (width, height) != image.size:
        image = image.resize((width, height), resample=plan.resample)
    crop_h, crop_w = plan.crop
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return np.asarray(image.crop((left, top, left + crop_w, top + crop_h)))


def pixel_values(processor: Any, images: list[Image.Image]) -> torch.Tensor:
    """float32 [n, 3, h, w]: what `processor(images=images, return_tensors="pt")["pixel_values"]` gives."""
    plan = _plan(processor)
    if plan is None or not images:
        return processor(images=images, return_tensors="pt")["pixel_values"]
    crops = np.stack([_resized_crop(image, plan) for image in images])  # [n, h, w, 3] uint8
    out = np.empty((len(crops), 3, *crops.shape[1:3]), dtype=np.float32)
    for channel in range(3):
        np.take(plan.values[channel], crops[..., channel], out=out[:, channel])
    return torch.from_numpy(out)
