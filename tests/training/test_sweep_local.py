"""Hydra multirun with the basic launcher: point dirs named from overrides, W&B groups, the Optuna preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers.apps import run_app
from helpers.scale import (
    TINY_TRAIN,
    VENV_BIN,
    LocalSweep,
    assert_reports_what_it_logged,
    job_env,
    sweep_points,
    wandb_records,
)
from hydra import compose, initialize_config_dir

from trendgen.config import CONF_DIR, register_configs
from trendgen.config.resolvers import point_dirname
from trendgen.tracking.runs import RUN_ID_FILE


def test_multirun_points_are_named_from_their_overrides_and_finish(local_sweep: LocalSweep) -> None:
    points = sweep_points(local_sweep.sweep_dir)
    assert len(points) == 2
    lrs = set()
    for point in points:
        hydra_cfg = yaml.safe_load((point / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert point.name == point_dirname(hydra_cfg["job"]["override_dirname"])
        overrides = dict(
            o.split("=", 1) for o in yaml.safe_load((point / ".hydra" / "overrides.yaml").read_text())
        )
        lrs.add(overrides["model.optimizer.lr"])
        assert f"lr={overrides['model.optimizer.lr']}" in point.name
        assert "logger=" not in point.name  # excluded keys stay out of the name
        assert (point / "model" / "config.json").is_file()
        assert_reports_what_it_logged(point)
    assert {float(lr) for lr in lrs} == {1e-3, 1e-4}


def test_sweep_subdir_uses_override_dirname(local_sweep: LocalSweep) -> None:
    recorded = yaml.safe_load((local_sweep.sweep_dir / "multirun.yaml").read_text())["hydra"]
    assert recorded["sweep"]["subdir"] == "${trendgen.point_dirname:${hydra.job.override_dirname}}"
    assert recorded["job"]["chdir"] is False


def test_point_dirname_stays_one_short_path_component() -> None:
    overrides = ",".join(f"model.freeze.option_{i}=value/{i}" for i in range(20))
    name = point_dirname(overrides)
    assert "/" not in name and len(name) <= 200
    assert name.startswith("option_0=value_0,")
    assert point_dirname(overrides.replace("value/19", "other")) != name  # the hash keeps points apart
    assert point_dirname("model.optimizer.lr=0.001") == "model.optimizer.lr=0.001"


def test_wandb_one_group_per_sweep_runs_named_from_overrides_each_finished(local_sweep: LocalSweep) -> None:
    runs = []
    for point in sweep_points(local_sweep.sweep_dir):
        logs = list((point / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(logs) == 1, f"expected one offline W&B run in {point}"
        records = wandb_records(logs[0])
        run = next(r.run for r in records if r.HasField("run"))
        exits = [r.exit for r in records if r.HasField("exit")]
        assert run.run_group == local_sweep.sweep_dir.name
        hydra_cfg = yaml.safe_load((point / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert run.display_name == hydra_cfg["job"]["override_dirname"]
        assert run.run_id == (point / RUN_ID_FILE).read_text().strip()  # kept there: a requeue continues it
        assert exits and exits[-1].exit_code == 0, "the run was not finished"
        runs.append((run.start_time.ToSeconds(), exits[-1].runtime, run.run_id))
    runs.sort()
    (start_a, runtime_a, id_a), (start_b, _, id_b) = runs
    assert id_a != id_b
    assert start_b >= start_a + runtime_a - 1, "the second run started before the first finished"


def test_optuna_preset_maximises_validation_recall() -> None:
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hydra/sweeper=optuna_recall"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.direction == "maximize"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert "model.optimizer.lr" in sweeper.params


@pytest.mark.slow
def test_optuna_runs_trials_and_reports_the_best_recall(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "optuna"
    cmd = [
        str(VENV_BIN / "trendgen-train"),
        "-m",
        "hydra/sweeper=optuna_recall",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=1",
        f"hydra.sweep.dir={sweep_dir}",
        *TINY_TRAIN,
    ]
    result = run_app(cmd, cwd=tmp_path, env=job_env(TRENDGEN_ROOT=str(tmp_path)), timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    recalls = [
        json.loads((p / "metrics.json").read_text())["val/recall_mean"] for p in sweep_points(sweep_dir)
    ]
    assert len(recalls) == 2
    assert best["best_value"] == pytest.approx(max(recalls))
