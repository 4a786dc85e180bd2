"""Quality bars of trendgen's forecasts and growth labels on simulated panels (`trendgen.forecast.simulate`).

1. Forecasts: each panel's last H weeks are held out; `forecast_values` backtests on the rest and forecasts
   them. Scored on the held-out weeks: the default's seasonal MASE against the seasonal naive's, and the
   coverage of its 80% intervals. The backtest table (models x metrics) of the first panel is printed.
2. Labels: flat panels (binomial noise around a constant share, with and without a yearly season) and a
   panel rising by 1 point of share a week from a flat history, all at trend.fdr=0.05: the share of flat
   series labelled, and of rising ones labelled emerging after each week of rise (the detection delay).

    .venv/bin/python scripts/quality_forecast.py --series 300 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from trendgen.forecast.backtest import naive_scale
from trendgen.forecast.growth import growth_of_values, labels, q_values
from trendgen.forecast.models import forecast_panel, plan_models
from trendgen.forecast.panel import BacktestSetup, forecast_values
from trendgen.forecast.simulate import simulate_panel

METRICS = ("mase", "mae", "smape", "wape", "coverage")


def held_out(n_series: int, horizon: int, seed: int, origins: int, n_jobs: int) -> dict:
    panel = simulate_panel(n_series=n_series, seed=seed)
    history, future = panel.shares[:, :-horizon], panel.shares[:, -horizon:]
    start = time.perf_counter()
    result = forecast_values(history, horizon, 52, 0.8, BacktestSetup(origins=origins), n_jobs=n_jobs)
    seconds = time.perf_counter() - start
    naive = forecast_panel(history, horizon, plan_models(history.shape[1], 52, ("seasonal_naive",)))
    scale = naive_scale(history, 52)[:, None]
    mase = float(np.nanmean(np.abs(result.mean - future) / scale))
    mase_naive = float(np.nanmean(np.abs(naive["seasonal_naive"] - future) / scale))
    inside = (future >= result.low) & (future <= result.high)
    return {
        "seed": seed,
        "horizon": horizon,
        "model": result.model,
        "mase": round(mase, 4),
        "mase_seasonal_naive": round(mase_naive, 4),
        "ratio": round(mase / mase_naive, 4),
        "coverage": round(float(inside.mean()), 4),
        "seconds": round(seconds, 1),
        "backtest": result.backtest,
    }


def flat_and_rising(n_series: int, seed: int, photos: int = 400, weeks: int = 156) -> dict:
    rng = np.random.default_rng(seed)
    t = np.arange(weeks + 8)
    level = rng.uniform(0.05, 0.2, (n_series, 1))
    season = 1 + 0.5 * np.sin(2 * np.pi * t / 52 + rng.uniform(0, 2 * np.pi, (n_series, 1)))
    out: dict = {}
    for name, latent in (("flat", level * np.ones((1, len(t)))), ("flat_seasonal", level * season)):
        values = rng.binomial(photos, latent[:, :weeks]) / photos
        tests = growth_of_values(values, 52, 8)
        out[name] = float(np.mean(np.array(labels(tests.slope, q_values(tests.p), 0.05)) != "steady"))
    for name, latent in (("rising", level * np.ones((1, len(t)))), ("rising_seasonal", level * season)):
        caught = []
        for k in range(1, 9):
            rise = latent[:, : weeks + k].copy()
            rise[:, weeks:] += 0.01 * np.arange(1, k + 1)
            values = rng.binomial(photos, rise) / photos
            tests = growth_of_values(values, 52, 8)
            caught.append(
                float(np.mean(np.array(labels(tests.slope, q_values(tests.p), 0.05)) == "emerging"))
            )
        out[name] = caught
        out[f"{name}_delay"] = next((k + 1 for k, c in enumerate(caught) if c >= 0.9), None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=300)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--origins", type=int, default=3)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [held_out(args.series, h, s, args.origins, args.n_jobs) for h in (13, 26) for s in seeds]
    print("| horizon | seed | model | MASE | seasonal naive | ratio | 80% coverage | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['horizon']} | {r['seed']} | {r['model']} | {r['mase']:.3f} | "
            f"{r['mase_seasonal_naive']:.3f} | {r['ratio']:.3f} | {r['coverage']:.3f} | {r['seconds']} |"
        )
    for h in (13, 26):
        first = next(r for r in rows if r["horizon"] == h)
        print(f"\nbacktest, horizon {h}, seed {first['seed']} (cut-offs {first['backtest']['cutoffs']}):")
        print("| model | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS))
        for model, s in sorted(first["backtest"]["scores"].items(), key=lambda kv: kv[1]["mase"]):
            chosen = " (default)" if model == first["backtest"]["chosen"] else ""
            print(f"| {model}{chosen} | " + " | ".join(f"{s[m]:.3f}" for m in METRICS) + " |")
    labels_bar = [flat_and_rising(args.series, s) for s in seeds]
    print("\nlabels at trend.fdr=0.05 (per seed):")
    for s, r in zip(seeds, labels_bar, strict=True):
        caught, seasonal = [round(c, 2) for c in r["rising"]], [round(c, 2) for c in r["rising_seasonal"]]
        print(
            f"seed {s}: flat labelled {r['flat']:.3f}, flat with a season {r['flat_seasonal']:.3f}; rising "
            f"caught after 1..8 weeks {caught} (90% at week {r['rising_delay']}), with a season {seasonal} "
            f"(90% at week {r['rising_seasonal_delay']})"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"forecasts": rows, "labels": labels_bar}, f, indent=1)


if __name__ == "__main__":
    main()
