"""The training recipe behind `trendgen-train`: fine-tune CLIP, then save a Hugging Face model folder.

The run dir (`paths.output_dir`) receives Lightning checkpoints (`checkpoints/`), the logger's files,
`model/`: CLIPModel, tokenizer and image processor of the weights `export.weights` names (`best`: the
checkpoint with the best `callbacks.model_checkpoint.monitor`, by default the lowest val/loss; `last`: the
final weights), written by rank 0 when training stops with progress (epochs done, `trainer.max_time`,
`trainer.max_steps`, Ctrl-C), and `metrics.json`: those weights' val/ and test/ scores and which checkpoint
they came from (see `trendgen.training.fit`). With `model.lora.enabled`, `model/` is the merged model and
`lora_adapter/` the adapter alone (`trendgen.model.lora`); with `model.wise_ft.alphas`, `model/` is the chosen
interpolation between the starting and the fine-tuned weights and `wise_ft/alpha_<a>/` the others
(`trendgen.model.wise_ft`). A `model/` left by an earlier run in the same dir is never overwritten: the run
refuses to start instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, open_dict

from trendgen.data.datamodule import FashionDataModule
from trendgen.data.fields import field_weights
from trendgen.errors import TrendgenError
from trendgen.model.build import load_clip, save_clip
from trendgen.model.module import ClipFineTuner
from trendgen.model.wise_ft import check_wise_ft, run_wise_ft, start_weights
from trendgen.training.fit import (
    build_trainer,
    export_weights,
    fit_and_export,
    refuse_existing,
    write_metrics,
)
from trendgen.training.launch import cluster_plugins, continues_run, resolve_ckpt_path

log = logging.getLogger(__name__)


def build_training(cfg: DictConfig) -> tuple[FashionDataModule, ClipFineTuner, Any, Any]:
    """Datamodule, LightningModule, tokenizer and image processor for `cfg`.

    With `model.contrastive_batch`, the loaders yield batches of that many rows and the module encodes them
    in micro-batches of `data.batch_size` (gradient caching)."""
    data_cfg, micro = contrastive_batching(cfg)
    datamodule = FashionDataModule(data_cfg, replay_cfg=cfg.get("replay"))
    captions = None if cfg.model.pretrained else datamodule.all_captions()  # a new tokenizer learns these
    model, tokenizer, image_processor = load_clip(cfg.model, captions_for_tokenizer=captions)
    datamodule.tokenizer, datamodule.image_processor = tokenizer, image_processor
    datamodule.max_length = model.config.text_config.max_position_embeddings
    module = ClipFineTuner(
        model,
        tokenizer,
        cfg.model,
        category_prompts=datamodule.zero_shot_prompts,
        micro_batch=micro,
        field_weights=field_weights(cfg.data.get("fields")),
    )
    if micro is not None:  # manual optimization clips in the module; Lightning refuses it in the Trainer
        module.gradient_clip_val = cfg.trainer.get("gradient_clip_val")
    return datamodule, module, tokenizer, image_processor


def contrastive_batching(cfg: DictConfig) -> tuple[DictConfig, int | None]:
    """(the data config the loaders use, the micro-batch) for `model.contrastive_batch` (None: off)."""
    n = cfg.model.get("contrastive_batch")
    if not n:
        return cfg.data, None
    micro = int(cfg.data.batch_size)
    if int(n) % micro:
        raise TrendgenError(
            f"model.contrastive_batch={n} is not a multiple of data.batch_size={micro} (its micro-batch)"
        )
    data_cfg = cfg.data.copy()
    data_cfg.batch_size = int(n)
    return data_cfg, micro


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit CLIP as `cfg` says, save `OUTPUT/model/` and return the exported weights' metrics."""
    output_dir = Path(cfg.paths.output_dir)
    model_dir = output_dir / "model"
    plugins = cluster_plugins(cfg.trainer)  # refuses a bad SLURM layout; picks the requeue owner
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)  # "last" or a SLURM restart: newest ckpt
    resuming = continues_run(ckpt_path, output_dir)
    if not resuming:  # a run resuming itself replaces its own earlier model/
        refuse_existing(model_dir)
        refuse_existing(output_dir / "wise_ft", "WiSE-FT models")
        refuse_existing(output_dir / "lora_adapter", "a LoRA adapter")

    pl.seed_everything(cfg.seed, workers=True)
    datamodule, module, tokenizer, image_processor = build_training(cfg)
    trainer = build_trainer(without_trainer_clipping(cfg), plugins, resuming)
    alphas = check_wise_ft(cfg.model, trainer)
    start = start_weights(module.export_model()) if alphas else None  # before training: WiSE-FT's start

    def export() -> None:
        save_clip(model_dir, module.export_model(), tokenizer, image_processor)
        if module.lora is not None and cfg.model.lora.save_adapter:
            module.lora.save(output_dir / "lora_adapter")

    weights = export_weights(cfg)
    metrics = fit_and_export(trainer, module, datamodule, ckpt_path, export, output_dir, model_dir, weights)
    if start is not None and trainer.global_step > 0:  # every rank: the alphas are validated in parallel

        def save(folder: Path, model: Any) -> None:
            save_clip(folder, model, tokenizer, image_processor)

        metrics = run_wise_ft(trainer, module, datamodule, start, alphas, save, output_dir, metrics)
        if trainer.is_global_zero:
            write_metrics(output_dir, metrics, model_dir)
    return metrics


def without_trainer_clipping(cfg: DictConfig) -> DictConfig:
    """`cfg` with `trainer.gradient_clip_val` off under gradient caching (the module clips, see above)."""
    if not cfg.model.get("contrastive_batch"):
        return cfg
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.trainer.gradient_clip_val = None
    return cfg
