"""Run identity for experiment tracking: a W&B run id derived from the run dir, sweep groups, override names.

- id: a hash of the absolute run dir, so a requeued or resumed job (same dir) continues the same W&B run
  (`resume="allow"`), and two different runs never share one.
- group: the sweep dir's name in a multirun (every point of one sweep side by side in W&B), none otherwise.
- name: the point's overrides (`hydra.job.override_dirname`, e.g. `model.optimizer.lr=0.001`), else the run
  dir's name.
Values the user set explicitly (logger.wandb.id/group/name) are kept.
A run that resumes itself (requeue, preemption) logs CSV to a fresh `csv/resume<k>/`: Lightning's CSVLogger
would otherwise delete the metrics.csv of the earlier attempt.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from omegaconf import DictConfig, open_dict

from trendgen.tracking.secrets_env import WANDB_API_KEY, without_secrets

log = logging.getLogger(__name__)


def wandb_run_id(output_dir: str | Path) -> str:
    """A W&B run id that depends only on the absolute run dir."""
    return hashlib.sha1(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]


def sweep_group_and_name() -> tuple[str | None, str | None]:
    """(group, name) from Hydra's runtime config; (None, None) outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None, None
    hydra_cfg = HydraConfig.get()
    overrides = without_secrets(hydra_cfg.job.get("override_dirname") or "") or None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return Path(hydra_cfg.sweep.dir).name, overrides or f"job{hydra_cfg.job.get('num', 0)}"
    return None, overrides or Path(hydra_cfg.runtime.output_dir).name


def wandb_offline_without_key(cfg: DictConfig) -> None:
    """With a `logger.wandb` node and no WANDB_API_KEY, W&B logs offline (WANDB_MODE=offline unless set)."""
    if cfg.get("logger") and "wandb" in cfg.logger and not os.environ.get(WANDB_API_KEY):
        os.environ.setdefault("WANDB_MODE", "offline")
        log.info("WANDB_API_KEY is unset: W&B logs offline (sync later with `wandb sync`)")


def set_run_identity(cfg: DictConfig, resuming: bool = False) -> None:
    """Fill logger.wandb's id, group, name and resume="allow" unless the user set them; when `resuming`, move
    the CSV logger to a new version dir so the earlier attempt's metrics.csv survives."""
    logger_cfg = cfg.get("logger")
    if not logger_cfg:
        return
    wandb_node = logger_cfg.get("wandb")
    if wandb_node is not None:
        group, name = sweep_group_and_name()
        with open_dict(wandb_node):
            if not wandb_node.get("id"):
                wandb_node.id = wandb_run_id(cfg.paths.output_dir)
            if not wandb_node.get("group") and group:
                wandb_node.group = group
            if not wandb_node.get("name") and name:
                wandb_node.name = name
            if not wandb_node.get("resume"):
                wandb_node.resume = "allow"
    csv_node = logger_cfg.get("csv")
    if resuming and csv_node is not None:
        root = Path(str(csv_node.get("save_dir") or cfg.paths.output_dir)) / str(csv_node.get("name") or "")
        version = str(csv_node.get("version") or "")
        k = 1
        while (root / f"{version}resume{k}").exists():
            k += 1
        if (root / version / "metrics.csv").exists() or k > 1:
            with open_dict(csv_node):
                csv_node.version = f"{version}resume{k}"
