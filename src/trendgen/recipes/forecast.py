"""The forecasting recipe behind `trendgen-forecast`: read a table of trend series, backtest the models,
forecast with the default (or `forecast.model`), label each series' growth, and write into the run dir:

- `forecast.json`: `backtest` (per model `mase`, `mae`, `smape`, `wape`, `coverage`, and `by_horizon`),
  `forecasts` (per series `dates`, `mean`, `lo`, `hi`), `labels` (per series `label`, `slope`,
  `statistic`, `p`, `q`), `growth_tests` (how many, at which false-discovery rate), `notes` (fallbacks);
- `forecasts.csv`: one row per series and date ahead (`series, date, mean, lo, hi, label`);
- `report.html` (see `trendgen.forecast.report`).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from trendgen.errors import TrendgenError
from trendgen.files import write_json, write_text
from trendgen.forecast.models import MODELS
from trendgen.forecast.panel import BacktestSetup, PanelForecast, forecast_values
from trendgen.forecast.report import render
from trendgen.forecast.series import SeriesTable, read_series

log = logging.getLogger(__name__)

SHOWN = 4  # series drawn in the report when forecast.show is empty: the largest risers


def _check(cfg: DictConfig, table: SeriesTable) -> None:
    n_points = len(table.dates)
    if cfg.forecast.horizon > n_points:
        raise TrendgenError(
            f"forecast.horizon={cfg.forecast.horizon} is longer than the history of {cfg.series.path} "
            f"({n_points} dates)"
        )
    for key, names in (
        ("forecast.models", list(cfg.forecast.models)),
        ("forecast.model", [cfg.forecast.model]),
    ):
        unknown = [m for m in names if m not in MODELS and not (key == "forecast.model" and m == "auto")]
        if unknown:
            raise TrendgenError(f"{key}: unknown model {unknown[0]!r} (one of {', '.join(MODELS)})")
    missing = [s for s in cfg.forecast.show if s not in table.names]
    if missing:
        raise TrendgenError(f"forecast.show: no series {missing[0]!r} in {cfg.series.path}")


def _n_jobs(setting: int, n_series: int) -> int:
    """statsforecast's processes: one for a small table (a pool costs more than it saves), else as set."""
    if n_series < 200 or setting == 0:
        return 1
    return (os.cpu_count() or 1) if setting == -1 else setting


def _round(values: np.ndarray) -> list[float]:
    return np.round(values, 6).tolist()


def build_record(table: SeriesTable, result: PanelForecast, horizon: int, fdr: float) -> dict[str, Any]:
    """forecast.json's content."""
    ahead = [str(d) for d in table.future_dates(horizon)]
    growth, q = result.growth, result.q
    labels = {
        name: {
            "label": result.labels[i],
            "slope": round(float(growth.slope[i]), 6),
            "statistic": round(float(growth.statistic[i]), 4),
            "p": float(f"{growth.p[i]:.4g}"),
            "q": float(f"{q[i]:.4g}"),
        }
        for i, name in enumerate(table.names)
    }
    return {
        "series": len(table.names),
        "periods": len(table.dates),
        "unit": table.unit,
        "last_date": str(table.dates[-1]),
        "horizon": horizon,
        "level": round(100 * result.level, 6),
        "season_length": result.season_length,
        "model": result.model,
        "interval_method": result.interval_method,
        "notes": result.notes,
        "backtest": result.backtest,
        "forecasts": {
            name: {
                "dates": ahead,
                "mean": _round(result.mean[i]),
                "lo": _round(result.low[i]),
                "hi": _round(result.high[i]),
            }
            for i, name in enumerate(table.names)
        },
        "labels": labels,
        "growth_tests": {
            "count": len(table.names),
            "method": "Benjamini-Hochberg",
            "fdr": fdr,
            "window": growth.window,
            "seasonal": growth.seasonal,
            "emerging": result.labels.count("emerging"),
            "fading": result.labels.count("fading"),
        },
    }


def forecasts_csv(record: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["series", "date", "mean", "lo", "hi", "label"])
    for name, f in record["forecasts"].items():
        for row in zip(f["dates"], f["mean"], f["lo"], f["hi"], strict=True):
            writer.writerow([name, *row, record["labels"][name]["label"]])
    return buffer.getvalue()


def shown_series(record: dict[str, Any], asked: list[str]) -> list[str]:
    """The series the report draws: those asked for, else the largest risers (by test statistic)."""
    if asked:
        return list(asked)
    ranked = sorted(record["labels"], key=lambda n: -record["labels"][n]["statistic"])
    return ranked[:SHOWN]


def run_forecast(cfg: DictConfig) -> dict[str, Any]:
    """Setup (read, check the table) -> backtest, forecast, label -> write the outputs; returns the record."""
    table = read_series(cfg.series.path, cfg.series.layout)
    _check(cfg, table)
    season = int(cfg.forecast.season_length or table.season_length)
    horizon = int(cfg.forecast.horizon)
    log.info(
        "%d series of %d %sly periods, season %d: backtest and forecast",
        len(table.names),
        len(table.dates),
        table.unit,
        season,
    )
    result = forecast_values(
        table.values,
        horizon,
        season_length=season,
        level=float(cfg.forecast.level) / 100,
        setup=BacktestSetup(cfg.backtest.horizon, int(cfg.backtest.origins), cfg.backtest.step),
        models=tuple(cfg.forecast.models),
        model=str(cfg.forecast.model),
        fdr=float(cfg.trend.fdr),
        growth_window=int(cfg.trend.growth_window),
        n_jobs=_n_jobs(int(cfg.forecast.n_jobs), len(table.names)),
    )
    for note in result.notes:
        log.warning("%s", note)
    record = build_record(table, result, horizon, float(cfg.trend.fdr))
    out = Path(cfg.paths.output_dir)
    write_json(out / "forecast.json", record)
    write_text(out / "forecasts.csv", forecasts_csv(record))
    dates = [str(d) for d in table.dates]
    shown = shown_series(record, list(cfg.forecast.show))
    write_text(out / "report.html", render(record, dates, table.values, table.names, shown))
    log.info("wrote %s (forecast.json, forecasts.csv, report.html)", out)
    return record
