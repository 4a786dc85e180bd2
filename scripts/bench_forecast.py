"""Forecasting speed: statsforecast (what trendgen runs) against statsmodels (what it ran before), and the
whole `trendgen-forecast` app on an F1-sized panel.

1. `--compare N`: ETS and Theta on N simulated weekly series of 5 years (52-week season), fit and 13 weeks
   forecast per series, one process: statsforecast's AutoETS (on the STL-adjusted series, as trendgen runs it
   for seasons past 24) and Theta, against statsmodels' Holt-Winters `ExponentialSmoothing` (additive
   trend and season) and `ThetaModel`; seconds per series and the held-out seasonal MASE of each.
   statsmodels is no dependency of trendgen: `pip install statsmodels` to run this part.
2. `--scale N`: the app end to end (`trendgen-forecast`, every baseline and the default backtested at 3
   origins, 13 weeks ahead) on N weekly series of 5 years, as a wide CSV; wall seconds with `forecast.n_jobs`.

    .venv/bin/python scripts/bench_forecast.py --compare 100 --scale 10000 --n-jobs 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simulate_trends import write_table

from trendgen.forecast.backtest import naive_scale
from trendgen.forecast.models import forecast_panel, plan_models
from trendgen.forecast.simulate import simulate_panel

HORIZON = 13


def statsmodels_forecasts(history: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    from statsmodels.tsa.forecasting.theta import ThetaModel
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    out = {"ets": [], "theta": []}
    seconds = {"ets": 0.0, "theta": 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row in history:
            start = time.perf_counter()
            fit = ExponentialSmoothing(row, trend="add", seasonal="add", seasonal_periods=52).fit()
            out["ets"].append(fit.forecast(HORIZON))
            seconds["ets"] += time.perf_counter() - start
            start = time.perf_counter()
            out["theta"].append(ThetaModel(row, period=52).fit().forecast(HORIZON))
            seconds["theta"] += time.perf_counter() - start
    return {k: np.asarray(v) for k, v in out.items()}, seconds


def compare(n_series: int) -> None:
    panel = simulate_panel(n_series=n_series, seed=11)
    history, future = panel.shares[:, :-HORIZON], panel.shares[:, -HORIZON:]
    scale = naive_scale(history, 52)[:, None]

    def mase(f: np.ndarray) -> float:
        return float(np.nanmean(np.abs(f - future) / scale))

    rows = []
    for model in ("ets", "theta"):
        plan = plan_models(history.shape[1], 52, (model,))
        forecast_panel(history[:2], HORIZON, plan)  # warm: imports and first-call costs
        start = time.perf_counter()
        f = forecast_panel(history, HORIZON, plan)[model]
        rows.append(("statsforecast", model, (time.perf_counter() - start) / n_series, mase(f)))
    try:
        sm, seconds = statsmodels_forecasts(history)
    except ImportError:
        print("statsmodels is not installed (pip install statsmodels): its rows are left out")
        sm, seconds = {}, {}
    for model, f in sm.items():
        rows.append(("statsmodels", model, seconds[model] / n_series, mase(f)))
    print(f"\n{n_series} weekly series of {history.shape[1]} weeks, {HORIZON} ahead, one process")
    print("| library | model | ms per series | held-out seasonal MASE |\n|---|---|---|---|")
    for library, model, per, score in rows:
        print(f"| {library} | {model} | {1000 * per:.1f} | {score:.3f} |")


def scale(n_series: int, n_jobs: int) -> None:
    panel = simulate_panel(n_series=n_series, seed=12)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "panel.csv"
        write_table(table, panel.dates, panel.names, panel.shares, long=False)
        app = Path(sys.executable).parent / "trendgen-forecast"
        cmd = [str(app), f"series.path={table}", f"forecast.horizon={HORIZON}", f"forecast.n_jobs={n_jobs}"]
        cmd.append(f"hydra.run.dir={tmp}/run")
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "TRENDGEN_ROOT": tmp})
        seconds = time.perf_counter() - start
    print(
        f"\ntrendgen-forecast on {n_series} weekly series x 260 weeks (7 models backtested at 3 origins, "
        f"{HORIZON} ahead, forecast.n_jobs={n_jobs}): {seconds:.0f} s wall"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--compare", type=int, default=100, help="series for the library comparison (0: skip)"
    )
    parser.add_argument("--scale", type=int, default=0, help="series for the whole app (0: skip)")
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args()
    if args.compare:
        compare(args.compare)
    if args.scale:
        scale(args.scale, args.n_jobs)


if __name__ == "__main__":
    main()
