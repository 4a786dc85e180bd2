"""Helpers for the scale-out tests: the local SLURM cluster, tiny training overrides, W&B transaction logs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers.apps import run_app

VENV_BIN = Path(sys.executable).parent  # the project's venv: SLURM jobs run its python and entrypoints
TERMINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
}


def _run(cmd: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class SlurmCluster:
    """Submit, inspect and wait for jobs on the local cluster; cancels what a test left running."""

    partition: str
    cpus: int
    submitted: list[str] = field(default_factory=list)

    def sbatch(
        self,
        script: str | Path,
        workdir: Path,
        *sbatch_args: str,
        script_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> str:
        """Submit a batch script (its text, or a file) from `workdir` with `env` (--export=ALL)."""
        workdir.mkdir(parents=True, exist_ok=True)
        if isinstance(script, str):
            path = workdir / f"job{len(self.submitted)}.sbatch"
            path.write_text(script)
        else:
            path = script
        cmd = ["sbatch", "--parsable", "--export=ALL", f"--chdir={workdir}", f"--partition={self.partition}"]
        result = subprocess.run(
            [*cmd, *sbatch_args, str(path), *script_args],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, f"sbatch failed: {result.stderr}"
        job_id = result.stdout.strip().split(";")[0]
        self.submitted.append(job_id)
        return job_id

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Restarts, ExitCode, ...); {} once SLURM forgot the job."""
        result = _run(["scontrol", "show", "job", "-o", job_id])
        if result.returncode != 0:
            return {}
        return dict(re.findall(r"(\w+)=(\S*)", result.stdout))

    def wait(self, job_id: str, timeout: float = 120, until: set[str] | None = None) -> dict[str, str]:
        """Poll until the job reaches one of `until` (default: any terminal state); fail on a timeout."""
        until = until or TERMINAL_STATES
        deadline = time.monotonic() + timeout
        info: dict[str, str] = {}
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if info.get("JobState") in until:
                return info
            time.sleep(0.5)
        pytest.fail(f"SLURM job {job_id} not in {sorted(until)} after {timeout:.0f}s: {info.get('JobState')}")

    def requeue(self, job_id: str, timeout: float = 60) -> None:
        """`scontrol requeue` a running job, then let it start again at once.

        SLURM holds a requeued job back (Reason=BeginTime, about two minutes); `StartTime=now` lifts that.
        """
        subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30, capture_output=True)
        self.release_requeued(job_id, timeout)

    def release_requeued(self, job_id: str, timeout: float = 60) -> None:
        """Wait until a requeued job runs again, lifting SLURM's BeginTime hold with `StartTime=now`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if int(info.get("Restarts", "0")) >= 1 and info.get("JobState") in {"RUNNING", "COMPLETED"}:
                return
            if info.get("JobState") == "PENDING" and info.get("Reason") == "BeginTime":
                _run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"])
            time.sleep(0.5)
        pytest.fail(f"requeued SLURM job {job_id} did not start again: {self.job(job_id)}")

    def cancel_unfinished(self) -> None:
        for job_id in self.submitted:
            if self.job(job_id).get("JobState", "COMPLETED") not in TERMINAL_STATES:
                _run(["scancel", job_id])


def slurm_problem() -> str | None:
    """None when the local SLURM answers and has a usable node, else why not."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM client tools (sinfo, sbatch) are not installed"
    try:
        result = _run(["sinfo", "-h", "-o", "%P|%a|%T|%c"], timeout=15)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: slurmctld is not answering"
    if result.returncode != 0:
        return f"sinfo failed: {result.stderr.strip() or result.stdout.strip()}"
    usable = [
        line
        for line in result.stdout.splitlines()
        if line.split("|")[1] == "up" and line.split("|")[2].rstrip("*~#") in {"idle", "mixed", "allocated"}
    ]
    return None if usable else f"no partition is up with a usable node: {result.stdout.strip()!r}"


# A few optimizer steps and one validation pass of the tiny CLIP on a few synthetic garments.
TINY_TRAIN = [
    "data.size=48",
    "data.val_size=16",
    "data.batch_size=8",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "~callbacks.progress_bar",
]


def job_env(**extra: str) -> dict[str, str]:
    """The environment of a training subprocess: one thread per process, W&B offline without a key."""
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra})
    return env


@dataclass
class LocalSweep:
    sweep_dir: Path
    result: subprocess.CompletedProcess[str]


def run_local_sweep(root: Path) -> LocalSweep:
    """`trendgen-train -m` over two learning rates (basic launcher), logging to CSV and W&B offline."""
    sweep_dir = root / "multirun"
    cmd = [
        str(VENV_BIN / "trendgen-train"),
        "-m",
        f"hydra.sweep.dir={sweep_dir}",
        "logger=[csv,wandb]",
        "model.optimizer.lr=1e-3,1e-4",
        *TINY_TRAIN,
    ]
    result = run_app(cmd, cwd=root, env=job_env(TRENDGEN_ROOT=str(root)), timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return LocalSweep(sweep_dir=sweep_dir, result=result)


def logged_values(run_dir: Path, key: str) -> list[float]:
    """Every value of `key` the run's CSV logger wrote (csv/metrics.csv), in step order."""
    import csv

    with (run_dir / "csv" / "metrics.csv").open(newline="") as handle:
        return [float(row[key]) for row in csv.DictReader(handle) if row.get(key)]


def assert_reports_what_it_logged(run_dir: Path, key: str = "val/recall_mean") -> None:
    """metrics.json (read by trendgen-compare and sweepers) holds the score of the run's one validation."""
    import json

    (logged,) = logged_values(run_dir, key)
    assert json.loads((run_dir / "metrics.json").read_text())[key] == pytest.approx(logged, abs=1e-6)


def sweep_points(sweep_dir: Path) -> list[Path]:
    """Every point dir of a multirun (a dir with .hydra/overrides.yaml)."""
    return sorted(
        p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml") if ".submitit" not in p.parts
    )


def wandb_records(path: Path) -> list:
    """The records of a W&B transaction log (`run-<id>.wandb`): a LevelDB-style log of protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, block, pending, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too short for a header: padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind not in (1, 2, 3, 4):  # full, first, middle, last
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records
