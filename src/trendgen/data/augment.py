"""Training-split augmentation (`data.augment`): random resized crop, horizontal flip, small rotation, and
colour jitter only when asked (colour is a label in fashion captions: "a red dress").

Two implementations of the same recipe:

- `SampleAugment` (`data.augment.where=workers`, the default): Pillow, per image, in the DataLoader workers,
  before the image processor. The crop is drawn inside the centred square the processor would keep and
  resized straight from the decoded image to the input size, so the processor's own resize and centre crop
  have nothing left to do.
- `BatchAugment` (`where=batch`): kornia on the processed batch tensor after it reached the device
  (`FashionDataModule.on_after_batch_transfer`, training batches only).

Both draw from torch's RNG (seeded per worker by PyTorch and Lightning). Rotated corners are filled with the
processor's mean colour (0 after normalisation, as kornia fills). docs/BENCHMARKS.md compares their cost.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from PIL import Image, ImageEnhance
from torch import Tensor, nn

from trendgen.errors import TrendgenError

WHERE = ("workers", "batch")


def check_augment(cfg: Any) -> None:
    """Refuse settings the augmentations cannot use, with the key that is wrong."""
    if cfg.where not in WHERE:
        raise TrendgenError(f"data.augment.where={cfg.where!r}: choose {' or '.join(WHERE)}")
    low, high = (float(v) for v in cfg.crop_scale)
    if not 0.0 < low <= high <= 1.0:
        raise TrendgenError(f"data.augment.crop_scale={list(cfg.crop_scale)}: need 0 < low <= high <= 1")
    ratio_low, ratio_high = (float(v) for v in cfg.crop_ratio)
    if not 0.0 < ratio_low <= ratio_high:
        raise TrendgenError(f"data.augment.crop_ratio={list(cfg.crop_ratio)}: need 0 < low <= high")
    if not 0.0 <= float(cfg.hflip) <= 1.0:
        raise TrendgenError(f"data.augment.hflip={cfg.hflip} is a probability in [0, 1]")
    for key in ("rotation", "brightness", "contrast", "saturation", "hue"):
        if float(getattr(cfg, key)) < 0:
            raise TrendgenError(f"data.augment.{key}={getattr(cfg, key)} must be >= 0")
    if float(cfg.hue) > 0.5:
        raise TrendgenError(f"data.augment.hue={cfg.hue} must be at most 0.5")


def processor_geometry(processor: Any) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(square input size, mean, std) of a CLIP image processor."""
    size = None
    for attribute, key in (("crop_size", "height"), ("size", "shortest_edge"), ("size", "height")):
        value = getattr(processor, attribute, None)
        size = size or (value.get(key) if hasattr(value, "get") else value)  # a dict or SizeDict, or an int
    if not size:
        raise TrendgenError(f"cannot tell the input size of image processor {type(processor).__name__}")
    return int(size), tuple(processor.image_mean), tuple(processor.image_std)


def _colour_on(cfg: Any) -> bool:
    return any(float(getattr(cfg, k)) > 0 for k in ("brightness", "contrast", "saturation", "hue"))


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


class SampleAugment:
    """Augment one PIL image (picklable, runs in DataLoader workers); returns `size` x `size` RGB."""

    def __init__(self, cfg: Any, processor: Any) -> None:
        check_augment(cfg)
        self.size, mean, _ = processor_geometry(processor)
        self.fill = tuple(round(255 * m) for m in mean)
        self.scale = tuple(float(v) for v in cfg.crop_scale)
        self.log_ratio = tuple(math.log(float(v)) for v in cfg.crop_ratio)
        self.hflip, self.rotation = float(cfg.hflip), float(cfg.rotation)
        self.jitter = {k: float(getattr(cfg, k)) for k in ("brightness", "contrast", "saturation", "hue")}
        self.colour = _colour_on(cfg)
        # what the processor keeps: CLIP's centred square, or the whole image (SigLIP resizes it to a square)
        self.whole_image = not getattr(processor, "do_center_crop", True)

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """A random box of `scale` of the area and `ratio` aspect inside what the processor would keep (the
        centred square, or the whole image for a processor without a centre crop, such as SigLIP's):
        torchvision's rule, 10 tries, else all of it."""
        if self.whole_image:
            x0, y0, region_w, region_h = 0, 0, width, height
        else:
            side = min(width, height)
            x0, y0, region_w, region_h = (width - side) // 2, (height - side) // 2, side, side
        for _ in range(10):
            target = region_w * region_h * _uniform(*self.scale)
            ratio = math.exp(_uniform(*self.log_ratio))
            w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < w <= region_w and 0 < h <= region_h:
                left = x0 + int(torch.randint(0, region_w - w + 1, ()))
                top = y0 + int(torch.randint(0, region_h - h + 1, ()))
                return left, top, left + w, top + h
        return x0, y0, x0 + region_w, y0 + region_h

    def __call__(self, image: Image.Image) -> Image.Image:
        image = image.resize((self.size, self.size), Image.Resampling.BICUBIC, box=self.crop_box(*image.size))
        if float(torch.rand(())) < self.hflip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.rotation > 0:
            angle = _uniform(-self.rotation, self.rotation)
            image = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=self.fill)
        return self._jitter(image) if self.colour else image

    def _jitter(self, image: Image.Image) -> Image.Image:
        """Brightness, contrast, saturation, then hue, each by a random factor, in torchvision's order."""
        for key, enhancer in (
            ("brightness", ImageEnhance.Brightness),
            ("contrast", ImageEnhance.Contrast),
            ("saturation", ImageEnhance.Color),
        ):
            if (strength := self.jitter[key]) > 0:
                image = enhancer(image).enhance(_uniform(max(0.0, 1 - strength), 1 + strength))
        if (hue := self.jitter["hue"]) > 0:
            shift = round(_uniform(-hue, hue) * 255)
            h, s, v = image.convert("HSV").split()
            h = h.point(lambda x: (x + shift) % 256)
            image = Image.merge("HSV", (h, s, v)).convert("RGB")
        return image


class BatchAugment(nn.Module):
    """Augment a batch of processed (normalised) images [B, 3, S, S] with kornia; same recipe as above."""

    def __init__(self, cfg: Any, processor: Any) -> None:
        super().__init__()
        import kornia.augmentation as K

        check_augment(cfg)
        size, mean, std = processor_geometry(processor)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        steps: list[nn.Module] = [
            K.RandomResizedCrop(
                (size, size),
                scale=tuple(float(v) for v in cfg.crop_scale),
                ratio=tuple(float(v) for v in cfg.crop_ratio),
                resample="bicubic",
            ),
            K.RandomHorizontalFlip(p=float(cfg.hflip)),
        ]
        if float(cfg.rotation) > 0:
            steps.append(K.RandomRotation(degrees=float(cfg.rotation), p=1.0))
        self.geometric = nn.Sequential(*steps)
        self.colour = (
            K.ColorJitter(
                brightness=float(cfg.brightness),
                contrast=float(cfg.contrast),
                saturation=float(cfg.saturation),
                hue=float(cfg.hue),
                p=1.0,
            )
            if _colour_on(cfg)
            else None
        )

    @torch.no_grad()
    def forward(self, pixels: Tensor) -> Tensor:
        if pixels.shape[0] == 0:
            return pixels
        out = self.geometric(pixels)
        if self.colour is not None:  # colour jitter works on 0..1 images: undo the normalisation around it
            mean, std = self.mean.to(out), self.std.to(out)
            out = (self.colour((out * std + mean).clamp(0, 1)) - mean) / std
        return out
