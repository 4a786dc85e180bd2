"""Tiny CLIP fine-tuners for the model and data tests: a from-scratch CLIP on the synthetic garments."""

from __future__ import annotations

import pytorch_lightning as pl
from omegaconf import DictConfig

from trendgen.config import ClipGeometry
from trendgen.data.datamodule import FashionDataModule
from trendgen.model.build import load_clip
from trendgen.model.module import ClipFineTuner


def tiny_geometry(vision_layers: int = 1, text_layers: int = 1) -> ClipGeometry:
    """A 32 px CLIP of 32-wide blocks: a training step takes milliseconds."""
    return ClipGeometry(
        image_size=32, patch_size=8, vision_hidden_size=32, vision_layers=vision_layers, vision_heads=2,
        vision_intermediate_size=64, text_hidden_size=32, text_layers=text_layers, text_heads=2,
        text_intermediate_size=64, projection_dim=16, max_text_length=16,
    )  # fmt: skip


def tiny_fine_tuner(
    data_cfg: DictConfig, model_cfg: DictConfig, prompts: str = "zero_shot_prompts"
) -> tuple[ClipFineTuner, FashionDataModule]:
    """The datamodule of `data_cfg` and a seeded CLIP of `model_cfg` (tokenizer learnt from its captions),
    wired as trendgen-train wires them; `prompts`: the datamodule property it scores zero-shot with."""
    datamodule = FashionDataModule(data_cfg)
    pl.seed_everything(0)
    clip, tokenizer, processor = load_clip(model_cfg, captions_for_tokenizer=datamodule.all_captions())
    datamodule.tokenizer, datamodule.image_processor = tokenizer, processor
    datamodule.max_length = model_cfg.geometry.max_text_length
    return ClipFineTuner(clip, tokenizer, model_cfg, getattr(datamodule, prompts)), datamodule
