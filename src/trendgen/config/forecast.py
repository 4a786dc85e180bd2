"""Schemas of the forecasting app's groups: series (the table), forecast (the models), backtest."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from trendgen.config.ranges import ranged


@dataclass
class SeriesConfig:
    """The table of trend series (see trendgen.forecast.series)."""

    path: str = MISSING  # a CSV or Parquet file
    layout: str = "auto"  # wide (a date column, then a column per series) | long (date, series, value) | auto


@dataclass
class ForecastConfig:
    """What is forecast, how far ahead and by which models (see trendgen.forecast.models)."""

    horizon: int = ranged(13, low=1)  # periods ahead, from the period after the table's last date
    level: float = ranged(80.0, low=0, high=100, open_low=True, open_high=True)  # of the intervals, percent
    model: str = "auto"  # the forecasting model; auto: ets, theta or ensemble, whichever backtests best
    # the models backtested side by side (the baselines every paper reports, and the candidates)
    models: list[str] = field(
        default_factory=lambda: ["seasonal_naive", "naive", "drift", "mean", "ets", "theta", "ensemble"]
    )
    season_length: int | None = ranged(
        None, low=1
    )  # null: from the dates' spacing (52 weeks, 12 months, ...)
    show: list[str] = field(default_factory=list)  # series drawn in the report; empty: the largest risers
    n_jobs: int = ranged(-1, low=-1)  # statsforecast's processes (-1: every core; 0 or 1: one)


@dataclass
class BacktestConfig:
    """Rolling-origin evaluation (see trendgen.forecast.backtest)."""

    horizon: int | None = ranged(None, low=1)  # null: forecast.horizon
    origins: int = ranged(3, low=1)  # cut-offs, the last `horizon` periods before the end
    step: int | None = ranged(None, low=1)  # periods between cut-offs; null: the horizon
