"""Run identity for experiment tracking: a W&B run id per invocation, sweep groups, override names.

- id: new for every invocation (two runs into one folder are two W&B runs), kept in `<run dir>/wandb_run_id`
  by rank 0; a run that resumes itself (requeue, preemption, `ckpt_path=last`) reads it back and continues
  that W&B run (`resume="allow"`; a run dir from before this file: the hash of the dir, as ids were then).
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
import secrets
import time
from pathlib import Path

from omegaconf import DictConfig, open_dict

from trendgen.files import write_text
from trendgen.tracking.secrets_env import WANDB_API_KEY, without_secrets

log = logging.getLogger(__name__)


RUN_ID_FILE = "wandb_run_id"


def wandb_run_id(output_dir: str | Path) -> str:
    """The W&B run id of runs from before ids were kept per invocation: a hash of the absolute run dir."""
    return hashlib.sha1(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]


def invocation_run_id(output_dir: str | Path, resuming: bool) -> str:
    """This invocation's W&B run id: the one kept in the run dir when resuming, else a new one (kept there by
    rank 0, so a requeued attempt finds it)."""
    kept = Path(output_dir) / RUN_ID_FILE
    if resuming:
        try:
            return kept.read_text().strip() or wandb_run_id(output_dir)
        except OSError:
            return wandb_run_id(output_dir)
    nonce = f"{Path(output_dir).resolve()}:{time.time_ns()}:{os.getpid()}:{secrets.token_hex(8)}"
    run_id = hashlib.sha1(nonce.encode()).hexdigest()[:16]
    rank = os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or os.environ.get("LOCAL_RANK") or "0"
    if rank == "0":
        write_text(kept, run_id + "\n")
    return run_id


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
                wandb_node.id = invocation_run_id(cfg.paths.output_dir, resuming)
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
