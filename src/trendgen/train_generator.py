"""The recipe behind `trendgen-train-generator`: train the diffusion model that draws trendgen's designs.

setup: the generator's parts (`diffusion`), the captioned images (`data`, at `diffusion.resolution`, in
[-1, 1]), the judge CLIP and its novelty reference; run: `Trainer.fit` (DDP, mixed precision, gradient
checkpointing, requeue and `ckpt_path=last` as for CLIP); cleanup: `OUTPUT/generator/` (EMA weights when EMA
is on), written however training stops and never over an earlier one, then `metrics.json`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig

from trendgen.data.datamodule import FashionDataModule
from trendgen.errors import TrendgenError
from trendgen.fit import build_trainer, fit_and_export, refuse_existing
from trendgen.generator.export import export_generator, words
from trendgen.generator.metrics import Judge
from trendgen.generator.module import DiffusionTrainer
from trendgen.generator.parts import build_parts
from trendgen.generator.pipeline import to_pil
from trendgen.slurm import cluster_plugins, continues_run, resolve_ckpt_path

log = logging.getLogger(__name__)


def pixel_processor(resolution: int) -> Any:
    """Resize the short side, centre-crop to `resolution`, scale to [-1, 1] (in the DataLoader workers)."""
    from transformers.models.clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": resolution},
        crop_size={"height": resolution, "width": resolution},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def at_resolution(dataset: Any, n: int, seed: int, processor: Any) -> list[Any]:
    """Up to `n` images of a split as the generator sees them (its resolution), for the novelty yardstick."""
    rows = np.random.default_rng(seed).permutation(len(dataset))[:n]
    images = [dataset[int(r)]["image"] for r in rows]
    images = [im for im in images if im is not None]
    if not images:
        return []
    return to_pil(processor(images=images, return_tensors="pt")["pixel_values"])


def build_judge(cfg: DictConfig, datamodule: FashionDataModule, processor: Any) -> Judge | None:
    """The CLIP that scores validation samples (`sampling.judge`, else the pixel generator's text tower)."""
    folder = cfg.sampling.judge or (cfg.diffusion.text_encoder if cfg.diffusion.kind == "pixel" else None)
    if not folder:
        log.info("no judge CLIP (sampling.judge): validation logs the loss and sample grids only")
        return None
    judge = Judge(folder, datamodule.category_prompts)
    s = cfg.sampling
    train = at_resolution(
        datamodule.dataset(cfg.data.train_split), s.novelty_train_images, cfg.seed, processor
    )
    heldout = at_resolution(
        datamodule.dataset(cfg.data.val_split), s.novelty_heldout_images, cfg.seed, processor
    )
    if train and heldout:
        judge.set_reference(train, heldout, float(s.near_copy_quantile))
    return judge


def check_captions(captions: list[str], data_name: str) -> None:
    if not any(c.strip() for c in captions):
        raise TrendgenError(
            f"data={data_name}: the dataset has no captions; a text-to-image generator needs them"
        )


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
    processor = pixel_processor(int(cfg.diffusion.resolution))
    datamodule = FashionDataModule(cfg.data, image_processor=processor)
    captions = datamodule.all_captions()
    check_captions(captions, str(cfg.data.name))
    parts = build_parts(cfg.diffusion)
    datamodule.tokenizer, datamodule.max_length = parts.tokenizer, parts.max_length
    judge = build_judge(cfg, datamodule, processor)
    module = DiffusionTrainer(
        parts, cfg.diffusion, cfg.sampling, datamodule.category_prompts, judge, output_dir / "samples"
    )
    trainer, _ = build_trainer(cfg, plugins, resuming)

    def export() -> None:
        if resuming and generator_dir.exists():  # a requeued run replaces its own earlier export
            import shutil

            shutil.rmtree(generator_dir)
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
            vocabulary = [w for c in captions for w in words(c)]
            export_generator(generator_dir, parts, info, vocabulary)
        finally:
            module.swap_out_ema()

    return fit_and_export(trainer, module, datamodule, ckpt_path, export, output_dir, generator_dir)
