"""trendgen.data.pixels.pixel_values: the CLIP image processor's pixel values, batched, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor

from trendgen.data.pixels import pixel_values

# (width, height): square, landscape, portrait, odd sizes, smaller than the crop, a long strip
SIZES = [(224, 224), (451, 300), (300, 451), (1000, 225), (37, 100), (800, 17), (257, 255)]


def photos() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]
    images.append(images[1].convert("L"))  # a grey photo: converted to RGB as the processor does
    rgba = images[2].convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, rgba.size[::-1], dtype=np.uint8)))
    images.append(rgba)  # a cut-out with transparency: put on white, as the processor does
    return images


def processor(**settings) -> CLIPImageProcessor:
    return CLIPImageProcessor(**settings)


@pytest.mark.parametrize(
    "settings",
    [
        {},  # CLIP's 224 recipe
        {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}},  # the tiny model's
        {"size": {"shortest_edge": 64}, "crop_size": {"height": 48, "width": 56}, "resample": 2},
        {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.5, 1.0], "rescale_factor": 1 / 127.5},
    ],
)
def test_pixel_values_equal_the_processors(settings):
    proc = processor(**settings)
    expected = proc(images=photos(), return_tensors="pt")["pixel_values"]
    got = pixel_values(proc, photos())
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert torch.equal(got, expected), (got - expected).abs().max()


@pytest.mark.parametrize(
    "settings",
    [
        {"do_center_crop": False},
        {"size": {"height": 40, "width": 30}},
        {"size": {"shortest_edge": 32}, "crop_size": {"height": 64, "width": 64}},  # crop past the image
        {"do_normalize": False},
    ],
)
def test_other_recipes_run_the_processor_itself(settings):
    proc = processor(**settings)
    images = [photos()[0], photos()[1]] if "do_center_crop" not in settings else [photos()[0]] * 2
    expected = proc(images=images, return_tensors="pt")["pixel_values"]
    assert torch.equal(pixel_values(proc, images), expected)
