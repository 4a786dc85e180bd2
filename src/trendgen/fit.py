"""What every training recipe shares: loggers, callbacks and Trainer from config, a fit that always exports.

`fit_and_export` runs `trainer.fit` and calls the recipe's `export` on rank 0 whenever training stops with
progress made (epochs done, `trainer.max_time`, `trainer.max_steps`, Ctrl-C, a SLURM stop), writes
`metrics.json` (read by trendgen-compare) and points `<runs>/latest` at the run dir.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from trendgen.errors import TrendgenError
from trendgen.runs import set_run_identity

log = logging.getLogger(__name__)

SECRET_MARKERS = ("key", "token", "secret", "password")
SECRET_ENV = ("OPENAI_API_KEY", "WANDB_API_KEY", "HF_TOKEN")


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


def refuse_existing(folder: Path, what: str = "a saved model") -> None:
    """An artifact folder left by an earlier run is never overwritten: refuse to start instead."""
    if folder.exists() and any(folder.iterdir()):
        raise TrendgenError(
            f"{folder} already holds {what} from an earlier run; it is never overwritten. "
            "Move it away or start a new run dir (hydra.run.dir=...)"
        )


def wandb_offline_without_key(cfg: DictConfig) -> None:
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


def build_trainer(cfg: DictConfig, plugins: list[Any], resuming: bool) -> pl.Trainer:
    """The Trainer of `cfg.trainer` with the config's loggers (hyperparameters logged, secrets out)."""
    wandb_offline_without_key(cfg)
    set_run_identity(cfg, resuming)  # W&B id/group/name; CSV kept on resume
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = instantiate_group(cfg.get("callbacks"))
    extra = {"plugins": plugins} if plugins else {}
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, **extra)
    for logger in loggers:
        logger.log_hyperparams(public_config(cfg))
    return trainer


def fit_and_export(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    ckpt_path: str | None,
    export: Callable[[], None],
    output_dir: Path,
    artifact: Path,
) -> dict[str, float]:
    """Fit; `export()` on rank 0 once any step was taken, however training stopped; returns the metrics."""

    def save() -> None:
        if trainer.is_global_zero and trainer.global_step > 0:
            export()
            log.info("saved %s", artifact)

    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit after a graceful stop
        save()
        raise
    finally:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                try:  # each run of a sweep finishes before the next starts
                    logger.experiment.finish()
                except Exception as err:  # e.g. wandb-core killed by SLURM's SIGTERM: keep the real outcome
                    log.warning("could not finish the W&B run: %s", err)
    save()  # epochs done, trainer.max_time or trainer.max_steps reached

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    metrics["global_step"] = float(trainer.global_step)
    if trainer.is_global_zero:  # read by trendgen-compare
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        if artifact.exists():
            point_latest_at(output_dir)
    return metrics
