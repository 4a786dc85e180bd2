"""What every training recipe shares: loggers, callbacks and Trainer from config, a fit that always exports.

`fit_and_export` runs `trainer.fit`, then puts the weights `export.weights` names into the module: `best`,
the checkpoint the monitoring ModelCheckpoint chose (`best_model_path`), or `last`, the weights training ended
with (`best` falls back to `last` when no checkpoint was saved, e.g. `trainer.max_time` before the first
validation). It validates those weights, tests them on the test split when the recipe has one, and calls
the recipe's `export` on rank 0 whenever training stopped with progress made (epochs done, `trainer.max_time`,
`trainer.max_steps`, Ctrl-C). `metrics.json` (read by trendgen-compare) holds the exported weights' val/ and
test/ scores and `exported` (which checkpoint, its monitored score, or why the last weights); `<runs>/latest`
points at the run dir.
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
from omegaconf import DictConfig
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.model_helpers import is_overridden

from trendgen.errors import TrendgenError
from trendgen.files import write_text
from trendgen.tracking.runs import set_run_identity, wandb_offline_without_key
from trendgen.tracking.secrets_env import public_config
from trendgen.tracking.wandb_runs import log_exported_folder

log = logging.getLogger(__name__)


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
    if not loggers:  # logger=none: what only logs (Lightning refuses LearningRateMonitor without a logger)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    extra = {"plugins": plugins} if plugins else {}
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, **extra)
    for logger in loggers:
        logger.log_hyperparams(public_config(cfg))
    return trainer


def export_weights(cfg: DictConfig) -> str:
    """`export.weights` (best | last; an ExportWeights member once the schema has checked it)."""
    weights = cfg.get("export", {}).get("weights", "best")
    return str(getattr(weights, "value", weights))


def chosen_checkpoint(trainer: pl.Trainer, weights: str) -> tuple[str | None, dict[str, Any]]:
    """The checkpoint `export.weights` picks (None: the weights in memory) and what metrics.json says."""
    if weights not in ("best", "last"):
        raise TrendgenError(f"export.weights={weights!r}: choose best or last")
    if weights == "last":
        return None, {"weights": "last", "reason": "export.weights=last"}
    monitor = next(
        (c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None
    )
    if monitor is None:
        return None, {"weights": "last", "reason": "no ModelCheckpoint monitors a metric"}
    path = monitor.best_model_path
    if not path or not Path(path).is_file():
        reason = f"no checkpoint was saved for {monitor.monitor} (training stopped before a validation)"
        return None, {"weights": "last", "reason": reason, "monitor": monitor.monitor}
    score = monitor.best_model_score
    return path, {
        "weights": "best",
        "checkpoint": path,
        "monitor": monitor.monitor,
        "mode": monitor.mode,
        "score": None if score is None else float(score),
    }


def load_weights(module: pl.LightningModule, path: str) -> None:
    """Put a Lightning checkpoint's weights (and what the module's `on_load_checkpoint` reads) in `module`."""
    import torch

    checkpoint = torch.load(path, map_location=module.device, weights_only=True)  # tensors, no code
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"], strict=module.strict_loading)


class LastValidation(pl.Callback):
    """The global step of the last validation during fit (None before any)."""

    def __init__(self) -> None:
        self.step: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.step = trainer.global_step


def checkpoint_step(path: str) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def score_exported(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    path: str | None,
    validated_step: int | None,
) -> dict[str, float]:
    """Put the weights to export in `module` (`path`, or those in memory), validate them unless fit's last
    validation already scored exactly them (`validated_step`), and test them when there is a test split."""
    step = checkpoint_step(path) if path else trainer.global_step
    stages = [] if step == validated_step else [trainer.validate]
    if path and not stages:
        load_weights(module, path)
    has_test = getattr(datamodule, "has_test_split", lambda: False)
    if is_overridden("test_step", module) and has_test():
        stages.append(trainer.test)
    scores: dict[str, float] = {}
    for stage in stages:
        stage(module, datamodule=datamodule, ckpt_path=path, verbose=False)
        scores.update({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})
    return scores


def _finish_wandb(trainer: pl.Trainer) -> None:
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            try:  # each run of a sweep finishes before the next starts
                logger.experiment.finish()
            except Exception as err:  # e.g. wandb-core killed by SLURM's SIGTERM: keep the real outcome
                log.warning("could not finish the W&B run: %s", err)


def write_metrics(output_dir: Path, metrics: dict[str, Any], artifact: Path) -> None:
    write_text(output_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if artifact.exists():
        point_latest_at(output_dir)


_RUNNING: dict[str, Any] = {}  # the trainer fitting in this process and its run dir, for a requeue


def save_requeue_checkpoint() -> Path | None:
    """On rank 0, while fitting: `checkpoints/last-requeue.ckpt` of the current step (called by submitit's
    time-out/preemption handler, as Lightning saves its own `hpc_ckpt` inside its SIGUSR1 handler). Rank 0
    alone writes it: no barrier, the requeue stops the other ranks. Nothing is exported afterwards."""
    trainer = _RUNNING.get("trainer")
    if trainer is None or not trainer.is_global_zero or trainer.global_step == 0:
        return None
    path = _RUNNING["output_dir"] / "checkpoints" / "last-requeue.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = trainer._checkpoint_connector.dump_checkpoint()  # trainer.save_checkpoint would wait on all
    trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, path)
    _RUNNING["requeued"] = True
    log.info("saved %s at step %d for the requeued job", path, trainer.global_step)
    return path


def fit_and_export(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    ckpt_path: str | None,
    export: Callable[[], None],
    output_dir: Path,
    artifact: Path,
    weights: str = "best",
) -> dict[str, Any]:
    """Fit; put the `weights` (best | last) in `module`, score them, `export()` on rank 0; return metrics."""
    chosen_checkpoint(trainer, weights)  # a bad value fails before training
    last_validation = LastValidation()
    trainer.callbacks.append(last_validation)

    def save(path: str | None, scores: dict[str, Any] | None = None) -> None:
        if trainer.is_global_zero and trainer.global_step > 0:
            export()
            log.info("saved %s (%s)", artifact, path or "last weights")
            log_exported_folder(trainer, artifact, path, scores)  # logger.wandb.log_model: an artifact

    _RUNNING.update(trainer=trainer, output_dir=output_dir, requeued=False)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit after a graceful stop
        _finish_wandb(trainer)
        if _RUNNING.get("requeued"):  # the requeued job resumes from the checkpoint and exports then
            raise
        path, exported = chosen_checkpoint(trainer, weights)
        if path is not None and trainer.is_global_zero:
            load_weights(module, path)
        save(path)
        if trainer.is_global_zero and trainer.global_step > 0:
            fitted = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
            metrics = {**fitted, "global_step": float(trainer.global_step)}
            write_metrics(output_dir, {**metrics, "exported": {**exported, "interrupted": True}}, artifact)
        raise
    except BaseException:
        _finish_wandb(trainer)
        raise
    finally:
        _RUNNING.pop("trainer", None)
    metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    metrics["global_step"] = float(trainer.global_step)
    path, exported = chosen_checkpoint(trainer, weights)
    if trainer.global_step > 0:  # epochs done, trainer.max_time or trainer.max_steps reached
        metrics.update(score_exported(trainer, module, datamodule, path, last_validation.step))
        save(path, metrics)
    _finish_wandb(trainer)
    metrics["exported"] = exported
    if trainer.is_global_zero:  # read by trendgen-compare
        write_metrics(output_dir, metrics, artifact)
    return metrics
