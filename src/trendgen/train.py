"""The training recipe behind `trendgen-train`: fine-tune CLIP, then save a Hugging Face model folder.

The run dir (`paths.output_dir`) receives Lightning checkpoints (`checkpoints/`), the logger's files and
`metrics.json` (the final logged metrics, for trendgen-compare) and
`model/`: CLIPModel, tokenizer and image processor, written by rank 0 when training stops for any reason
(epochs done, `trainer.max_time`, `trainer.max_steps`, Ctrl-C). A `model/` left by an earlier run in the same
dir is never overwritten: the run refuses to start instead.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from trendgen.data.datamodule import FashionDataModule
from trendgen.errors import TrendgenError
from trendgen.model.build import load_clip, save_clip
from trendgen.model.module import ClipFineTuner
from trendgen.runs import set_run_identity
from trendgen.slurm import cluster_plugins, continues_run, resolve_ckpt_path

log = logging.getLogger(__name__)

SECRET_MARKERS = ("key", "token", "secret", "password")
SECRET_ENV = ("OPENAI_API_KEY", "WANDB_API_KEY")


def public_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config minus secrets: keys naming a key/token/secret, values holding an env secret."""
    secrets = [os.environ[name] for name in SECRET_ENV if os.environ.get(name)]

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: scrub(v) for k, v in node.items() if not any(m in str(k).lower() for m in SECRET_MARKERS)
            }
        if isinstance(node, list):
            return [scrub(v) for v in node]
        if isinstance(node, str) and any(s in node for s in secrets):
            return "<redacted>"
        return node

    return scrub(OmegaConf.to_container(cfg, resolve=True))


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` node of a config group (loggers, callbacks)."""
    if not group:
        return []
    return [
        instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node
    ]


def build_training(cfg: DictConfig) -> tuple[FashionDataModule, ClipFineTuner, Any, Any]:
    """Datamodule, LightningModule, tokenizer and image processor for `cfg`."""
    datamodule = FashionDataModule(cfg.data)
    captions = None if cfg.model.pretrained else datamodule.all_captions()  # a new tokenizer learns these
    model, tokenizer, image_processor = load_clip(cfg.model, captions_for_tokenizer=captions)
    datamodule.tokenizer, datamodule.image_processor = tokenizer, image_processor
    datamodule.max_length = model.config.text_config.max_position_embeddings
    module = ClipFineTuner(model, tokenizer, cfg.model, category_prompts=datamodule.category_prompts)
    return datamodule, module, tokenizer, image_processor


def _refuse_existing(model_dir: Path) -> None:
    if model_dir.exists() and any(model_dir.iterdir()):
        raise TrendgenError(
            f"{model_dir} already holds a saved model from an earlier run; it is never overwritten. "
            "Move it away or start a new run dir (hydra.run.dir=...)"
        )


def _wandb_offline_without_key(cfg: DictConfig) -> None:
    if cfg.get("logger") and "wandb" in cfg.logger and not os.environ.get("WANDB_API_KEY"):
        os.environ.setdefault("WANDB_MODE", "offline")
        log.info("WANDB_API_KEY is unset: W&B logs offline (sync later with `wandb sync`)")


def point_latest_at(output_dir: Path) -> None:
    """Point `<parent>/latest` at this run dir (single runs only), so `.../latest/model` is the newest model.

    Only a symlink is ever replaced: a real file or folder named `latest` is left alone.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return
    latest = output_dir.parent / "latest"
    if latest.exists() and not latest.is_symlink():
        return
    fresh = output_dir.parent / f".latest-{os.getpid()}"
    fresh.symlink_to(output_dir.name)
    fresh.replace(latest)  # atomic


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit CLIP as `cfg` says, save `OUTPUT/model/` and return the final logged metrics."""
    output_dir = Path(cfg.paths.output_dir)
    model_dir = output_dir / "model"
    plugins = cluster_plugins(cfg.trainer)  # refuses a bad SLURM layout; picks the requeue owner
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)  # "last" or a SLURM restart: newest ckpt
    if not continues_run(ckpt_path, output_dir):  # a run resuming itself replaces its own earlier model/
        _refuse_existing(model_dir)

    pl.seed_everything(cfg.seed, workers=True)
    datamodule, module, tokenizer, image_processor = build_training(cfg)

    _wandb_offline_without_key(cfg)
    set_run_identity(cfg, continues_run(ckpt_path, output_dir))  # W&B id/group/name; CSV kept on resume
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = instantiate_group(cfg.get("callbacks"))
    extra = {"plugins": plugins} if plugins else {}
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, **extra)
    for logger in loggers:
        logger.log_hyperparams(public_config(cfg))

    def save_model() -> None:
        if trainer.is_global_zero and trainer.global_step > 0:
            save_clip(model_dir, module.model, tokenizer, image_processor)
            log.info("saved the model to %s", model_dir)

    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit after a graceful stop
        save_model()
        raise
    finally:
        for logger in loggers:
            if isinstance(logger, WandbLogger):
                try:  # each run of a sweep finishes before the next starts
                    logger.experiment.finish()
                except Exception as err:  # e.g. wandb-core killed by SLURM's SIGTERM: keep the real outcome
                    log.warning("could not finish the W&B run: %s", err)
    save_model()  # epochs done, trainer.max_time or trainer.max_steps reached

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    metrics["global_step"] = float(trainer.global_step)
    if trainer.is_global_zero:  # read by trendgen-compare
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        if (model_dir / "config.json").exists():
            point_latest_at(output_dir)
    return metrics
