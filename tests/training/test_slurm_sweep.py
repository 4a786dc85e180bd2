"""A Hydra multirun through hydra/launcher=slurm (hydra-submitit-launcher) on the local SLURM."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from helpers.scale import (
    TINY_TRAIN,
    VENV_BIN,
    SlurmCluster,
    assert_reports_what_it_logged,
    job_env,
    sweep_points,
)

from trendgen.config.resolvers import point_dirname

pytestmark = pytest.mark.slurm


def test_slurm_launcher_runs_one_job_per_sweep_point(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    cmd = [
        str(VENV_BIN / "trendgen-train"),
        "-m",
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={slurm_cluster.partition}",
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.mem_gb=2",
        f"hydra.sweep.dir={sweep_dir}",
        "model.optimizer.lr=1e-3,1e-4",
        *TINY_TRAIN,
    ]
    env = job_env(TRENDGEN_ROOT=str(tmp_path))
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    # submitit submits the points as one job array: one array task (its own SLURM job) per point
    job_dirs = sorted(p for p in (sweep_dir / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name))
    assert len(job_dirs) == 2, "one SLURM job per sweep point"
    submission = next((sweep_dir / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "export OMP_NUM_THREADS=1" in submission  # the launcher's setup: threads = cpus_per_task
    for job_dir in job_dirs:
        assert "Job completed successfully" in (job_dir / f"{job_dir.name}_0_log.out").read_text()
        info = slurm_cluster.wait(job_dir.name, timeout=60)
        assert info["JobState"] == "COMPLETED"

    points = sweep_points(sweep_dir)
    assert len(points) == 2
    lrs = set()
    for point in points:
        hydra_cfg = yaml.safe_load((point / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert point.name == point_dirname(hydra_cfg["job"]["override_dirname"])
        assert hydra_cfg["job"]["id"] in {d.name for d in job_dirs}  # the point ran as that SLURM job
        overrides = yaml.safe_load((point / ".hydra" / "overrides.yaml").read_text())
        lrs.add(float(dict(item.split("=", 1) for item in overrides)["model.optimizer.lr"]))
        assert (point / "model" / "config.json").is_file()
        assert_reports_what_it_logged(point)
        log = (point / "train.log").read_text()
        assert "GPU available" in log  # Lightning's log lands here...
        assert "SLURM auto-requeueing enabled" not in log  # ...and submitit, not Lightning, owns the requeue
    assert lrs == {1e-3, 1e-4}


@pytest.mark.slow
def test_submitit_requeue_resumes_the_point_in_its_own_dir(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """USR2 (submitit's time-out signal) -> a checkpoint of the current step, a requeue -> the point resumes
    from that checkpoint, not from the older step checkpoint, and exports once, when it finishes."""
    sweep_dir = tmp_path / "sweep"
    cmd = [
        str(VENV_BIN / "trendgen-train"),
        "-m",
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={slurm_cluster.partition}",
        "hydra.launcher.mem_gb=2",
        f"hydra.sweep.dir={sweep_dir}",
        "logger=[csv,wandb]",
        *TINY_TRAIN,
        "data.size=4800",  # 600 steps of 8: still training seconds after the first step checkpoint
        "trainer.max_steps=600",
        "callbacks.step_checkpoint.every_n_train_steps=5",
    ]
    env = job_env(TRENDGEN_ROOT=str(tmp_path))
    with subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as launcher:
        deadline = time.monotonic() + 150
        while not list(sweep_dir.glob("*/checkpoints/steps/last.ckpt")):
            assert launcher.poll() is None and time.monotonic() < deadline, "no step checkpoint"
            time.sleep(0.2)
        time.sleep(0.5)  # a few steps past the step checkpoint
        (job_dir,) = [p for p in (sweep_dir / ".submitit").iterdir() if p.name.isdigit()]
        subprocess.run(["scancel", "--signal=USR2", job_dir.name], check=True, timeout=30)
        slurm_cluster.release_requeued(job_dir.name)
        output, _ = launcher.communicate(timeout=240)
    assert launcher.returncode == 0, output[-4000:]
    (point,) = sweep_points(sweep_dir)
    job_log = next(job_dir.glob("*_log.out")).read_text() + next(job_dir.glob("*_log.err")).read_text()
    assert "Requeued job" in job_log
    requeue_ckpt = point / "checkpoints" / "last-requeue.ckpt"
    assert f"Restoring states from the checkpoint path at {requeue_ckpt}" in job_log
    saved_at = int(re.search(r"last-requeue.ckpt at step (\d+)", job_log).group(1))
    assert 5 <= saved_at < 600
    assert json.loads((point / "metrics.json").read_text())["global_step"] == 600
    exports = re.findall(r"saved \S+/model ", (point / "train.log").read_text())
    assert len(exports) == 1  # the interrupted attempt exported nothing newer than its checkpoint
    run_ids = {d.name.rsplit("-", 1)[-1] for d in (point / "wandb").glob("offline-run-*")}
    assert (
        len(list((point / "wandb").glob("offline-run-*"))) == 2 and len(run_ids) == 1
    )  # one W&B run, resumed
