"""SLURM and launcher awareness for the train and design recipes: layout checks, requeue ownership, resuming.

Who owns the requeue signal (exactly one owner per job):
- jobs started by hydra-submitit-launcher (`hydra/launcher=slurm`): submitit (SIGUSR2). Lightning's SLURM
  environment is given `auto_requeue=False` there, so Lightning neither saves an HPC checkpoint nor requeues.
- plain sbatch jobs (`slurm/*.sbatch`): Lightning (SIGUSR1, `#SBATCH --signal=SIGUSR1@90`): it saves
  `hpc_ckpt_N.ckpt` in the run dir and calls `scontrol requeue`.
Either way the requeued job runs in the same (deterministic) run dir and resumes from its newest checkpoint.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trendgen.errors import TrendgenError

_TORCHELASTIC_VARS = ("RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
_INTERACTIVE_JOB_NAMES = ("bash", "interactive")


def under_submitit() -> bool:
    """True inside a job that submitit started (hydra-submitit-launcher sets SUBMITIT_EXECUTOR=slurm)."""
    return os.environ.get("SUBMITIT_EXECUTOR", "") == "slurm"


def under_torchrun() -> bool:
    """True in a process that torchrun (torch elastic) started; Lightning prefers it over SLURM."""
    return all(name in os.environ for name in _TORCHELASTIC_VARS)


def slurm_launched() -> bool:
    """True when Lightning will take its ranks from SLURM (srun), as its SLURMEnvironment.detect() decides."""
    if under_torchrun() or "SLURM_NTASKS" not in os.environ:
        return False
    return os.environ.get("SLURM_JOB_NAME") not in _INTERACTIVE_JOB_NAMES


def restart_count() -> int:
    """How many times SLURM has requeued this job (0 outside SLURM or on the first run)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)


def _device_count(devices: Any) -> int | None:
    """Processes per node that `trainer.devices` asks for; None when Lightning decides ("auto", -1)."""
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, str) and devices.strip().isdigit():
        return int(devices)
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    if isinstance(devices, (list, tuple)) or (hasattr(devices, "__len__") and not isinstance(devices, str)):
        return len(devices)
    return None


def check_slurm_layout(node: Mapping[str, Any], owner: str = "trainer") -> None:
    """Refuse a SLURM process layout that Lightning's SLURM environment cannot run, with one clear line.

    Lightning takes one process per device from srun: `--ntasks-per-node` must equal `<owner>.devices` and
    `--nodes` must equal `<owner>.num_nodes` (`owner`: the config node, `trainer` or `trend`). A bare
    `--ntasks` leaves the tasks per node unknown: refused. Does nothing outside SLURM, in interactive
    allocations and under torchrun.
    """
    if not slurm_launched():
        return
    ntasks = int(os.environ["SLURM_NTASKS"])
    per_node = os.environ.get("SLURM_NTASKS_PER_NODE")
    nodes = os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES") or "1"
    devices = _device_count(node.get("devices", 1))
    num_nodes = int(node.get("num_nodes", 1) or 1)
    hint = (
        f"launch with `srun --nodes={num_nodes} --ntasks-per-node={devices or 'DEVICES'}` "
        f"({owner}.num_nodes={num_nodes}, {owner}.devices={devices or node.get('devices')})"
    )
    if ntasks > 1 and per_node is None:
        raise TrendgenError(
            f"SLURM started {ntasks} tasks with a bare --ntasks, which Lightning cannot map to nodes; {hint}"
        )
    if per_node is not None and devices is not None and _first_int(per_node) != devices:
        raise TrendgenError(f"SLURM runs {per_node} tasks per node but {owner}.devices={devices}; {hint}")
    if _first_int(nodes) != num_nodes:
        raise TrendgenError(f"SLURM allocated {nodes} node(s) but {owner}.num_nodes={num_nodes}; {hint}")
    if devices is not None and devices * num_nodes != ntasks:
        raise TrendgenError(
            f"{owner}.devices={devices} x {owner}.num_nodes={num_nodes} needs {devices * num_nodes} processes"
            f" but SLURM started {ntasks} task(s) (run trendgen through srun); {hint}"
        )


def check_rank_count(devices: int, num_nodes: int, world: int, owner: str = "trend") -> None:
    """Refuse `world` started processes when the config asks for `devices` x `num_nodes` ranks."""
    if devices * num_nodes != world:
        raise TrendgenError(
            f"{owner}.devices={devices} x {owner}.num_nodes={num_nodes} is {devices * num_nodes} ranks, but "
            f"{world} process(es) were started: start one per device "
            f"(torchrun --nproc-per-node={devices}, srun --ntasks-per-node={devices})"
        )


def check_launch_layout(node: Mapping[str, Any], owner: str = "trend") -> None:
    """The process layout of srun or torchrun against `<owner>.devices` and `.num_nodes`, from the
    environment alone: a run started with the wrong number of ranks fails before its heavy imports."""
    check_slurm_layout(node, owner)
    if under_torchrun():
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        check_rank_count(int(node.get("devices", 1)), int(node.get("num_nodes", 1) or 1), world, owner)


def _first_int(value: str) -> int:
    """SLURM writes repeated counts as `2(x3)`; the first number is the one that matters on this node."""
    match = re.match(r"\d+", value.strip())
    return int(match.group()) if match else 0


def cluster_plugins(trainer_cfg: Mapping[str, Any]) -> list[Any]:
    """Check the layout and return the Trainer plugins that make the requeue owner the chosen one.

    Under submitit, Lightning's SLURMEnvironment gets `auto_requeue=False` (submitit owns SIGUSR2 and the
    requeue); elsewhere Lightning's defaults stand (auto-requeue on SIGUSR1 in plain sbatch jobs).
    """
    check_slurm_layout(trainer_cfg)
    if under_submitit() and slurm_launched():
        from lightning_fabric.plugins.environments import SLURMEnvironment

        return [SLURMEnvironment(auto_requeue=False)]
    return []


def _last_checkpoints(output_dir: Path) -> list[Path]:
    """The last*.ckpt files Lightning's `ckpt_path="last"` picks from (OUTPUT/checkpoints, steps/ too)."""
    found = (output_dir / "checkpoints").rglob("last*.ckpt")
    return [path for path in found if path.is_file() and path.stat().st_size > 0]


def _hpc_checkpoints(output_dir: Path) -> list[Path]:
    """Lightning's own SIGUSR1 checkpoints (plain sbatch requeue), which its SLURM auto-resume loads."""
    return [path for path in output_dir.glob("hpc_ckpt_*.ckpt") if path.is_file()]


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str | os.PathLike[str]) -> str | None:
    """What `Trainer.fit(ckpt_path=...)` is given; Lightning itself picks the file to resume from.

    - a path: that file (refused when missing);
    - "last": Lightning's `"last"` (the newest last*.ckpt of its ModelCheckpoints), or None in a run dir that
      has none (a fresh start, said as such);
    - None: a fresh start, except in a job SLURM requeued (SLURM_RESTART_COUNT > 0): there Lightning's SLURM
      auto-resume loads its hpc_ckpt when one exists (None is passed on), else `"last"` as above.
    """
    output_dir = Path(output_dir)
    if ckpt_path is None:
        if restart_count() == 0 or _hpc_checkpoints(output_dir):
            return None
        ckpt_path = "last"
    if ckpt_path == "last":
        return "last" if _last_checkpoints(output_dir) else None
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise TrendgenError(f"ckpt_path {ckpt_path!r} is not a checkpoint file")
    return str(path)


def continues_run(ckpt_path: str | None, output_dir: str | os.PathLike[str]) -> bool:
    """True when the fit resumes this run dir (after a requeue, a preemption or a stop), so the `model/` an
    earlier attempt of the same run left behind is its own and may be replaced."""
    if ckpt_path == "last":
        return True
    if ckpt_path is None:
        return restart_count() > 0 and bool(_hpc_checkpoints(Path(output_dir)))
    return Path(ckpt_path).resolve().is_relative_to(Path(output_dir).resolve())
