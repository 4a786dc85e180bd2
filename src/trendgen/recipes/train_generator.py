"""The recipe behind `trendgen-train-generator`: train the diffusion model that draws trendgen's designs.

setup: the generator's parts (`diffusion`), the captioned images (`data`, at `diffusion.resolution`, in
[-1, 1]), the judge CLIP and its novelty reference; run: `Trainer.fit` (DDP, mixed precision, gradient
checkpointing, requeue and `ckpt_path=last` as for CLIP); cleanup: `OUTPUT/generator/` (EMA weights when EMA
is on), written however training stops and never over an earlier one, then `metrics.json`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig

from trendgen.data.datamodule import FashionDataModule
from trendgen.errors import TrendgenError
from trendgen.generator.export import export_generator
from trendgen.generator.metrics import judge_with_reference
from trendgen.generator.module import DiffusionTrainer
from trendgen.generator.parts import build_parts
from trendgen.generator.pipeline import pixel_processor
from trendgen.training.fit import build_trainer, export_weights, fit_and_export, refuse_existing
from trendgen.training.launch import cluster_plugins, continues_run, resolve_ckpt_path

log = logging.getLogger(__name__)


def check_captions(captions: list[str], data_name: str) -> None:
    if not any(c.strip() for c in captions):
        raise TrendgenError(
            f"data={data_name}: the dataset has no captions; a text-to-image generator needs them"
        )


def build_generator_training(
    cfg: DictConfig, with_judge: bool = True
) -> tuple[FashionDataModule, DiffusionTrainer, list[str]]:
    """Datamodule (images at the generator's resolution, its tokenizer), module and the training captions."""
    processor = pixel_processor(int(cfg.diffusion.resolution))
    datamodule = FashionDataModule(cfg.data, image_processor=processor)
    check_captions(datamodule.dataset(cfg.data.train_split).captions, str(cfg.data.name))
    captions = datamodule.all_captions()
    parts = build_parts(cfg.diffusion)
    datamodule.tokenizer, datamodule.max_length = parts.tokenizer, parts.max_length
    judge_folder = cfg.sampling.judge or (cfg.diffusion.text_encoder if parts.kind == "pixel" else None)
    judge = (
        judge_with_reference(judge_folder, datamodule, processor, cfg.sampling, cfg.seed)
        if with_judge
        else None
    )
    module = DiffusionTrainer(
        parts,
        cfg.diffusion,
        cfg.sampling,
        datamodule.category_prompts,
        judge,
        Path(cfg.paths.output_dir) / "samples",
    )
    return datamodule, module, captions


def train_generator(cfg: DictConfig) -> dict[str, float]:
    """Fit the generator as `cfg` says, export `OUTPUT/generator/` and return the final logged metrics."""
    output_dir = Path(cfg.paths.output_dir)
    generator_dir = output_dir / "generator"
    plugins = cluster_plugins(cfg.trainer)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
    resuming = continues_run(ckpt_path, output_dir)
    if not resuming:
        refuse_existing(generator_dir, "a generator")

    pl.seed_everything(cfg.seed, workers=True)
    datamodule, module, captions = build_generator_training(cfg)
    parts = module.parts
    trainer = build_trainer(cfg, plugins, resuming)

    def export() -> None:
        module.swap_in_ema()
        try:
            info = {
                "global_step": int(trainer.global_step),
                "ema": module.ema is not None,
                "resolution": int(cfg.diffusion.resolution),
                "prediction_type": parts.noise_scheduler.config.prediction_type,
                "trained_on": str(cfg.data.name),
                "category_prompts": datamodule.category_prompts,
            }
            export_generator(generator_dir, parts, info, captions, replace=resuming)
        finally:
            module.swap_out_ema()

    weights = export_weights(cfg)
    return fit_and_export(trainer, module, datamodule, ckpt_path, export, output_dir, generator_dir, weights)
