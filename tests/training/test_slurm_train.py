"""Training on the local SLURM: DDP with 2 tasks under srun, a bare --ntasks refused, a requeue resumed."""

from __future__ import annotations

import csv
import json
import subprocess
import time
from pathlib import Path

import pytest
from helpers.scale import TINY_TRAIN, VENV_BIN, SlurmCluster, assert_reports_what_it_logged, job_env

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]


def srun(cluster: SlurmCluster, workdir: Path, layout: list[str], args: list[str], timeout: float = 240):
    """Run trendgen-train as a SLURM job step (blocking) with the given srun layout flags."""
    cmd = [
        "srun",
        f"--partition={cluster.partition}",
        f"--chdir={workdir}",
        "--export=ALL",
        "--time=5",
        "--cpus-per-task=1",
        *layout,
        str(VENV_BIN / "trendgen-train"),
        *args,
    ]
    return subprocess.run(
        cmd, env=job_env(TRENDGEN_ROOT=str(workdir)), capture_output=True, text=True, timeout=timeout
    )


def test_multinode_template_trains_ddp_with_two_srun_tasks(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """slurm/train_multinode.sbatch itself: one node, 2 tasks, CPU overrides (the node has no GPU)."""
    out = tmp_path / "job.out"
    layout = [
        "--nodes=1",
        "--ntasks-per-node=2",
        "--cpus-per-task=1",
        "--gpus-per-node=0",
        "--mem=4G",
        "--time=10",
    ]
    job_id = slurm_cluster.sbatch(
        REPO / "slurm" / "train_multinode.sbatch",
        tmp_path,
        *layout,
        f"--output={out}",
        script_args=("trainer.accelerator=cpu", "trainer.precision=32-true", "logger=csv", *TINY_TRAIN),
        env=job_env(TRENDGEN_ROOT=str(tmp_path), TRENDGEN_VENV=str(VENV_BIN.parent)),
    )
    info = slurm_cluster.wait(job_id, timeout=240)
    log = out.read_text()
    assert info["JobState"] == "COMPLETED", log[-4000:]
    assert "distributed_backend=gloo" in log
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log  # rank 1 of 2, its rank taken from SLURM
    run_dir = (
        tmp_path / "runs" / "train" / "runs" / f"slurm-{job_id}"
    )  # one dir for both ranks, kept on requeue
    assert (run_dir / "model" / "config.json").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # 48 samples, global batch 8: each of the 2 ranks loads 4 of its 24 samples per step -> 6 steps per epoch
    assert metrics["global_step"] == 6
    assert_reports_what_it_logged(run_dir)  # rank 0's metrics.json: the score of the whole split, as logged


def test_bare_ntasks_is_refused_with_one_line(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    run_dir = tmp_path / "bare"
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", f"hydra.run.dir={run_dir}"]
    result = srun(slurm_cluster, tmp_path, ["--ntasks=2"], [*ddp, *TINY_TRAIN])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = {line for line in result.stderr.splitlines() if line.startswith("trendgen: error:")}
    assert len(errors) == 1, result.stderr  # the same single line from each task
    assert "bare --ntasks" in errors.pop()
    assert "--ntasks-per-node=2" in result.stderr
    assert not (run_dir / "checkpoints").exists()


REQUEUE_SCRIPT = """#!/bin/bash
#SBATCH --job-name=trendgen-requeue
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=1
#SBATCH --time=10
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output={out}
echo "trendgen-test: start restart=${{SLURM_RESTART_COUNT:-0}}"
srun {train} hydra.run.dir={run_dir} ckpt_path=last {overrides}
"""


def test_requeued_training_job_resumes_from_its_checkpoint(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    run_dir, out = tmp_path / "run", tmp_path / "job.out"
    overrides = [
        *TINY_TRAIN,
        "data.size=640",  # 80 steps an epoch: the job is still training when it is requeued
        "trainer.max_steps=60",
        "trainer.log_every_n_steps=1",
        "callbacks.step_checkpoint.every_n_train_steps=3",
    ]
    script = REQUEUE_SCRIPT.format(
        out=out, train=VENV_BIN / "trendgen-train", run_dir=run_dir, overrides=" ".join(overrides)
    )
    job_id = slurm_cluster.sbatch(script, tmp_path, env=job_env(TRENDGEN_ROOT=str(tmp_path)))

    last = run_dir / "checkpoints" / "steps" / "last.ckpt"
    deadline = time.monotonic() + 150
    while not last.is_file():  # Lightning writes checkpoints atomically (temp file, then rename)
        state = slurm_cluster.job(job_id).get("JobState")
        assert state in {"PENDING", "RUNNING", "CONFIGURING"}, (
            f"job ended before a checkpoint: {out.read_text()}"
        )
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.1)
    slurm_cluster.requeue(job_id)
    info = slurm_cluster.wait(job_id, timeout=180)

    log = out.read_text()
    assert info["JobState"] == "COMPLETED", log[-4000:]
    assert int(info["Restarts"]) >= 1
    first, _, second = log.partition("trendgen-test: start restart=1")
    assert "trendgen-test: start restart=0" in first and second, log[-4000:]
    assert "max_steps=60` reached" not in first, (
        "training finished before the requeue: the test proves nothing"
    )
    assert "SLURM auto-requeueing enabled" in first  # plain sbatch: Lightning owns the requeue signal
    assert f"Restoring states from the checkpoint path at {last}" in second
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 60
    assert (run_dir / "model" / "config.json").is_file()
    first_steps, resumed_steps = (
        train_steps(run_dir / "csv" / sub / "metrics.csv") for sub in ("", "resume1")
    )
    assert first_steps[0] == 0  # the first attempt's log is kept
    assert (
        0 < resumed_steps[0] <= first_steps[-1] + 1
    )  # the second attempt went on from the checkpoint's step
    assert resumed_steps[-1] == 59


def train_steps(metrics_csv: Path) -> list[int]:
    with metrics_csv.open(newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle) if row.get("train/loss")]
