"""`trendgen-forecast` end to end on a simulated panel: forecast.json, forecasts.csv, report.html, W&B; bad
input is one line and exit code 2."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.apps import run_app
from helpers.wandb_offline import leaks, offline_runs, wandb_env

from trendgen.forecast.simulate import simulate_panel

BIN = Path(sys.executable).parent / "trendgen-forecast"
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from simulate_trends import write_table  # noqa: E402


def forecast(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [str(BIN), f"hydra.run.dir={cwd / 'run'}", *args]
    return run_app(cmd, timeout=180, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str], np.ndarray]:
    root = tmp_path_factory.mktemp("forecast")
    panel = simulate_panel(n_series=24, n_periods=160, seed=2)
    panel.shares[0, -8:] += 0.02 * np.arange(1, 9)  # series_0000 rises by 2 points a week at the end
    write_table(root / "panel.csv", panel.dates, panel.names, panel.shares, long=False)
    args = ["series.path=panel.csv", "forecast.horizon=6", "backtest.origins=2", "logger=wandb"]
    return root, forecast(args, root, wandb_env(root)), panel.shares


def test_the_app_writes_its_forecasts_backtest_labels_and_report(run):
    root, result, shares = run
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((root / "run" / "forecast.json").read_text())
    assert record["unit"] == "week" and record["season_length"] == 52 and record["periods"] == 160
    backtest = record["backtest"]
    assert backtest["cutoffs"] == [148, 154] and backtest["chosen"] in ("ets", "theta", "ensemble")
    assert record["model"] == backtest["chosen"]
    for model in ("seasonal_naive", "naive", "drift", "mean", "ets", "theta", "ensemble"):
        scores = backtest["scores"][model]
        assert set(scores) >= {"mase", "mae", "smape", "wape", "coverage", "by_horizon"}
        assert len(scores["by_horizon"]["mase"]) == 6
    best = backtest["scores"][backtest["chosen"]]["mase"]
    assert best < backtest["scores"]["mean"]["mase"]
    f = record["forecasts"]["series_0003"]
    assert f["dates"][0] == "2023-01-30" and len(f["dates"]) == 6  # the week after the table's last date
    assert all(lo <= m <= hi for lo, m, hi in zip(f["lo"], f["mean"], f["hi"], strict=True))
    assert abs(f["mean"][0] - shares[3, -8:].mean()) < 0.1
    rising = record["labels"]["series_0000"]
    assert rising["label"] == "emerging" and rising["q"] <= 0.05 and rising["slope"] > 0.01
    assert record["growth_tests"]["count"] == 24 and record["growth_tests"]["fdr"] == 0.05
    rows = list(csv.DictReader((root / "run" / "forecasts.csv").open()))
    assert len(rows) == 24 * 6 and rows[0]["series"] == "series_0000" and rows[0]["label"] == "emerging"
    report = (root / "run" / "report.html").read_text()
    assert "Backtest" in report and "series_0000" in report and report.count("data:image/png") == 4


def test_the_run_is_in_wandb_without_secrets(run):
    root = run[0]
    (logged,) = offline_runs(root / "run")
    record = json.loads((root / "run" / "forecast.json").read_text())
    chosen = record["backtest"]["chosen"]
    assert logged.summary["forecast/mase"] == record["backtest"]["scores"][chosen]["mase"]
    assert logged.summary["forecast/emerging"] == record["growth_tests"]["emerging"]
    assert {r["model"] for r in logged.rows("forecast/backtest")} >= {"seasonal_naive", "ensemble"}
    assert logged.artifact("report") is not None
    assert leaks(root) == []


@pytest.mark.parametrize(
    ("table", "args", "said"),
    [
        ("name,a\nred,1\nblue,2\n", [], "column 'name' is not dates"),
        (
            "date,a\n2024-01-01,1\n2024-01-08,2\n2024-01-15,3\n",
            ["forecast.horizon=5"],
            "longer than the history",
        ),
        (
            "date,a\n2024-01-01,1\n2024-01-08,2\n",
            ["forecast.horizon=1", "forecast.model=x"],
            "unknown model 'x'",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, table, args, said):
    (tmp_path / "t.csv").write_text(table)
    result = forecast(["series.path=t.csv", *args], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert said in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "forecast.json").exists()


def test_n_jobs_is_one_process_for_a_small_table_and_for_zero():
    from trendgen.recipes.forecast import _n_jobs

    assert _n_jobs(-1, 50) == 1 and _n_jobs(0, 5000) == 1 and _n_jobs(3, 5000) == 3
