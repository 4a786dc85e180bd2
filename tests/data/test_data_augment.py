"""`data.augment`: training batches are augmented (in the workers or on the batch), evaluation's never are."""

from __future__ import annotations

from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from helpers.clip import tiny_fine_tuner, tiny_geometry
from omegaconf import OmegaConf

from trendgen.config import ModelConfig, SyntheticDataConfig
from trendgen.data.datamodule import FashionDataModule
from trendgen.errors import TrendgenError
from trendgen.model.module import ClipFineTuner

torch.set_num_threads(1)

GEOMETRY = tiny_geometry()


def build(augment: dict[str, Any], image_px: int = 32) -> tuple[ClipFineTuner, FashionDataModule]:
    data = OmegaConf.structured(SyntheticDataConfig)
    data.merge_with(
        {
            "name": "synthetic", "size": 16, "val_size": 8, "test_size": 8, "image_px": image_px,
            "batch_size": 8, "num_workers": 0, "templates": ["a {color} {pattern} {garment}"],
            "augment": {"enabled": True, **augment},
        }
    )  # fmt: skip
    cfg = OmegaConf.structured(ModelConfig)
    optimizer = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3}
    cfg.merge_with(
        {"name_or_path": "tiny", "pretrained": False, "geometry": GEOMETRY, "optimizer": optimizer}
    )
    return tiny_fine_tuner(data, cfg)


class Inputs(pl.Callback):
    """The pixels each training and validation step received (after the batch reached the device)."""

    def __init__(self) -> None:
        self.train: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.val: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.train.append((batch["index"].clone(), batch["pixel_values"].clone()))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.val.append((batch["index"].clone(), batch["pixel_values"].clone()))


def fit_and_record(module: ClipFineTuner, datamodule: FashionDataModule) -> Inputs:
    inputs = Inputs()
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, max_steps=2, num_sanity_val_steps=0, callbacks=[inputs],
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    return inputs


def plain(datamodule: FashionDataModule, split: str, index: torch.Tensor) -> torch.Tensor:
    """What the plain image processor makes of those rows."""
    dataset = datamodule.dataset(split)
    return datamodule.collate_for(split)([dataset[int(i)] for i in index])["pixel_values"]


@pytest.mark.parametrize("where", ["workers", "batch"])
def test_training_inputs_are_augmented_and_evaluation_inputs_are_not(where):
    module, datamodule = build({"where": where})
    inputs = fit_and_record(module, datamodule)
    assert len(inputs.train) == 2 and inputs.val
    for index, pixels in inputs.train:
        reference = plain(datamodule, "train", index)
        assert pixels.shape == reference.shape
        changed = (pixels - reference).abs().flatten(1).amax(1) > 1e-3
        assert bool(changed.all()), (
            f"{int((~changed).sum())} of {len(index)} training images left as they were"
        )
    for index, pixels in inputs.val:
        assert torch.equal(pixels, plain(datamodule, "val", index))


@pytest.mark.parametrize("where", ["workers", "batch"])
def test_a_certain_flip_and_no_crop_or_rotation_mirrors_each_image_and_keeps_its_colours(where):
    """hflip=1, the whole image as the crop, no rotation, no colour jitter (the default): the processor's
    output mirrored left to right, so the colour of every pixel survives."""
    module, datamodule = build(
        {"where": where, "hflip": 1.0, "crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "rotation": 0.0}
    )
    inputs = fit_and_record(module, datamodule)
    for index, pixels in inputs.train:
        torch.testing.assert_close(pixels, plain(datamodule, "train", index).flip(-1), rtol=0, atol=1e-4)


@pytest.mark.parametrize("where", ["workers", "batch"])
def test_colour_jitter_is_there_when_asked(where):
    """With brightness, saturation and hue on and no geometric change, the mean colour of images moves."""
    geometry_off = {"hflip": 0.0, "crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "rotation": 0.0}
    module, datamodule = build(
        {"where": where, **geometry_off, "brightness": 0.5, "saturation": 0.5, "hue": 0.2}
    )
    inputs = fit_and_record(module, datamodule)
    for index, pixels in inputs.train:
        shift = (pixels.mean((2, 3)) - plain(datamodule, "train", index).mean((2, 3))).abs().amax(1)
        assert bool((shift > 1e-2).all()), shift


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"where": "gpu"}, "data.augment.where"),
        ({"crop_scale": [0.5, 1.5]}, "data.augment.crop_scale"),
        ({"hflip": 2.0}, "data.augment.hflip"),
        ({"hue": 0.7}, "data.augment.hue"),
    ],
)
def test_bad_augmentation_settings_are_refused_before_training(setting, message):
    _, datamodule = build(setting)
    with pytest.raises(TrendgenError, match=message.replace(".", r"\.")):
        datamodule.setup("fit")


def test_the_random_crop_of_a_portrait_photo_stays_in_the_square_the_processor_keeps():
    """A 200 x 300 photo: every box lies in the centred 200 x 200 square (rows 50-250) the CLIP processor
    would keep, covers 0.8-1 of it and has an aspect in 3/4-4/3 (the default), and the boxes vary."""
    from trendgen.config import AugmentConfig
    from trendgen.data.augment import SampleAugment
    from trendgen.model.build import image_processor_for

    augment = SampleAugment(OmegaConf.structured(AugmentConfig), image_processor_for(32))
    torch.manual_seed(0)
    boxes = [augment.crop_box(200, 300) for _ in range(500)]
    for left, top, right, bottom in boxes:
        assert 0 <= left < right <= 200 and 50 <= top < bottom <= 250, (left, top, right, bottom)
        width, height = right - left, bottom - top
        assert 0.8 * 200 * 200 * 0.98 <= width * height <= 200 * 200
        assert 0.75 * 0.97 <= width / height <= 4 / 3 * 1.03
    assert len(set(boxes)) > 100


def test_a_siglip_processor_crops_from_the_whole_photo_it_squashes():
    """SigLIP's processor resizes the whole photo to a square (no centre crop): a 200 x 300 photo's boxes
    reach its top and bottom rows, cover 0.8-1 of its area, and where none fits, the box is the photo."""
    from trendgen.config import AugmentConfig
    from trendgen.data.augment import SampleAugment
    from trendgen.model.families import siglip_image_processor

    augment = SampleAugment(OmegaConf.structured(AugmentConfig), siglip_image_processor(32))
    torch.manual_seed(0)
    boxes = [augment.crop_box(200, 300) for _ in range(500)]
    assert all(0 <= left < right <= 200 and 0 <= top < bottom <= 300 for left, top, right, bottom in boxes)
    assert min(top for _, top, _, _ in boxes) < 50 and max(bottom for *_, bottom in boxes) > 250
    assert all(0.8 * 200 * 300 * 0.98 <= (r - left) * (b - t) <= 200 * 300 for left, t, r, b in boxes)
    narrow = OmegaConf.structured(AugmentConfig)
    narrow.crop_ratio = [3.0, 3.0]  # a 3:1 box cannot hold 80% of a 2:3 photo
    assert SampleAugment(narrow, siglip_image_processor(32)).crop_box(200, 300) == (0, 0, 200, 300)
