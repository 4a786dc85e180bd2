"""Tiny CLIP fine-tuners for the model and data tests: a from-scratch CLIP on the synthetic garments."""

from __future__ import annotations

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from trendgen.config import ClipGeometry, ModelConfig, SyntheticDataConfig
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
    data_cfg: DictConfig,
    model_cfg: DictConfig,
    prompts: str = "zero_shot_prompts",
    micro_batch: int | None = None,
) -> tuple[ClipFineTuner, FashionDataModule]:
    """The datamodule of `data_cfg` and a seeded CLIP of `model_cfg` (tokenizer learnt from its captions),
    wired as trendgen-train wires them; `prompts`: the datamodule property it scores zero-shot with."""
    datamodule = FashionDataModule(data_cfg)
    pl.seed_everything(0)
    clip, tokenizer, processor = load_clip(model_cfg, captions_for_tokenizer=datamodule.all_captions())
    datamodule.tokenizer, datamodule.image_processor = tokenizer, processor
    datamodule.max_length = model_cfg.geometry.max_text_length
    module = ClipFineTuner(clip, tokenizer, model_cfg, getattr(datamodule, prompts), micro_batch=micro_batch)
    return module, datamodule


MODULE_GEOMETRY = tiny_geometry(vision_layers=2, text_layers=2)  # the module tests' CLIP


def model_cfg(**overrides):
    cfg = OmegaConf.structured(ModelConfig)
    cfg.merge_with(
        {
            "name_or_path": "tiny",
            "pretrained": False,
            "geometry": MODULE_GEOMETRY,
            "optimizer": {
                "_target_": "torch.optim.AdamW",
                "_partial_": True,
                "lr": 1e-3,
                "weight_decay": 0.1,
            },
            "warmup_fraction": 0.5,
            "min_lr_ratio": 0.1,
            **overrides,
        }
    )
    return cfg


def build(
    batch_size: int = 8, micro_batch: int | None = None, **overrides
) -> tuple[ClipFineTuner, FashionDataModule]:
    data = OmegaConf.structured(SyntheticDataConfig)
    data.merge_with(
        {
            "name": "synthetic",
            "size": 32,
            "val_size": 16,
            "test_size": 16,
            "image_px": 32,
            "batch_size": batch_size,
            "num_workers": 0,
            "templates": ["a {color} {pattern} {garment}"],
        }
    )
    return tiny_fine_tuner(data, model_cfg(**overrides), prompts="category_prompts", micro_batch=micro_batch)


def trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


FREEZE_GEOMETRY = ClipGeometry(  # the freezing tests' CLIP: 3 vision blocks, 2 text blocks
    image_size=16, patch_size=8, vision_hidden_size=16, vision_layers=3, vision_heads=2,
    vision_intermediate_size=32, text_hidden_size=16, text_layers=2, text_heads=2,
    text_intermediate_size=32, projection_dim=8, max_text_length=8,
)  # fmt: skip


SMALL_TRAINING = [  # trendgen-train overrides: a few synthetic garments, one process
    "data=synthetic",
    "data.size=64",
    "data.val_size=32",
    "data.test_size=32",
    "data.batch_size=16",
    "data.num_workers=0",
    "data.image_px=32",
]
