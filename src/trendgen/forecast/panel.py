"""Forecast a panel of series: the backtest, the default model's forecasts with calibrated intervals, and the
growth labels. One function for a table of series (`trendgen-forecast`) and for photo timelines (the design
pipeline's clusters and caption facets).

Intervals: conformal on the backtest's errors of the model that forecasts (see `backtest`); past the
backtest's horizon the last step's quantile grows with the square root of the steps. Without a backtest (a
history too short for one), a straight line's least-squares prediction interval (or the naive one's spread).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from trendgen.forecast.backtest import (
    Backtest,
    backtest,
    conformal_quantiles,
    naive_scale,
    origin_cutoffs,
    scores,
)
from trendgen.forecast.growth import GrowthTests, growth_of_values, labels, q_values
from trendgen.forecast.models import (
    CANDIDATES,
    MIN_FIT_POINTS,
    MODELS,
    forecast_panel,
    line_forecast,
    plan_models,
)


@dataclass(frozen=True)
class BacktestSetup:
    """Rolling-origin settings: `horizon` (None: the forecast's), `origins` cut-offs `step` periods apart
    (None: the horizon)."""

    horizon: int | None = None
    origins: int = 3
    step: int | None = None


@dataclass
class PanelForecast:
    """What `forecast_values` found for S series, H periods ahead."""

    model: str  # the model whose forecasts these are
    season_length: int  # the one the forecast used (1: none)
    mean: np.ndarray  # [S, H]
    low: np.ndarray  # [S, H]
    high: np.ndarray  # [S, H]
    level: float
    interval_method: str
    backtest: dict[str, Any] | None  # {horizon, cutoffs, step, scores: {model: {...}}}
    growth: GrowthTests | None = None
    q: np.ndarray | None = None
    labels: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fallback_interval(values: np.ndarray, mean: np.ndarray, model: str, level: float) -> tuple:
    """Prediction intervals without a backtest: a line's OLS interval, else the naive one's spread."""
    n_points = values.shape[1]
    steps = np.arange(1, mean.shape[1] + 1, dtype=float)
    if model == "linear" and n_points >= 3:
        _, low, high = line_forecast(values, mean.shape[1], level=level)
        return low, high, "least-squares prediction interval of the line"
    s = np.diff(values, axis=1).std(axis=1) if n_points >= 3 else np.abs(np.diff(values, axis=1)).mean(axis=1)
    half = stats.norm.ppf(0.5 + level / 2) * np.nan_to_num(s)[:, None] * np.sqrt(steps)[None, :]
    return mean - half, mean + half, "the naive forecast's spread (period-to-period changes)"


def _conformal_interval(
    bt: Backtest, model: str, values: np.ndarray, mean: np.ndarray, level: float
) -> tuple:
    scaled = np.abs(bt.forecasts[model] - bt.actual) / bt.scale[:, :, None]
    q = conformal_quantiles(scaled.reshape(-1, bt.horizon), level)
    horizon = mean.shape[1]
    if horizon > bt.horizon:  # past the backtest's horizon: the last quantile, growing as sqrt(steps)
        extra = q[-1] * np.sqrt(np.arange(bt.horizon + 1, horizon + 1) / bt.horizon)
        q = np.concatenate([q, extra])
    scale = naive_scale(values, bt.plan.season_length)
    scale = np.where(np.isfinite(scale), scale, np.nanmedian(scale) if np.isfinite(scale).any() else 0.0)
    half = np.nan_to_num(q[:horizon])[None, :] * scale[:, None]
    return mean - half, mean + half


def forecast_values(
    values: np.ndarray,
    horizon: int,
    season_length: int = 1,
    level: float = 0.8,
    setup: BacktestSetup | None = None,
    models: tuple[str, ...] = MODELS,
    model: str = "auto",
    fdr: float = 0.05,
    growth_window: int = 8,
    n_jobs: int = 1,
) -> PanelForecast:
    """Backtest `models`, forecast with `model` (auto: the best candidate by backtest MASE) and label the
    series `values` [S, T] (non-negative, as the forecasts and intervals are)."""
    setup = setup or BacktestSetup()
    n_points = values.shape[1]
    bt_horizon = setup.horizon or horizon
    step = setup.step or bt_horizon
    cutoffs = origin_cutoffs(n_points, bt_horizon, setup.origins, step)
    notes: list[str] = []
    backtested = bool(cutoffs) and cutoffs[0] >= MIN_FIT_POINTS
    wanted = tuple(dict.fromkeys([*models, *([model] if model != "auto" else CANDIDATES)]))
    plan = plan_models(cutoffs[0] if backtested else n_points, season_length, wanted)
    notes += plan.notes
    result = None
    chosen = model if model != "auto" and model in plan.models else plan.default
    if backtested:
        bt = backtest(values, bt_horizon, cutoffs, plan, n_jobs)
        scored = scores(bt, level)
        if model == "auto" and plan.default == "ensemble":
            chosen = min(CANDIDATES, key=lambda m: np.inf if scored[m]["mase"] is None else scored[m]["mase"])
        result = {"horizon": bt_horizon, "cutoffs": cutoffs, "step": step, "scores": scored, "chosen": chosen}
    else:
        notes.append(
            f"no backtest: {n_points} periods leave fewer than {MIN_FIT_POINTS} before the first of "
            f"{setup.origins} origins {step} apart, {bt_horizon} ahead"
        )
    if model != "auto" and model != chosen:
        notes.append(f"forecast.model={model} cannot run on this history: {chosen} forecasts instead")
    final = plan_models(n_points, season_length, wanted) if backtested else plan
    if final.season_length != plan.season_length:
        notes.append(
            f"the forecast uses the season ({final.season_length}); the backtest's shorter histories could "
            "not, so its scores and the intervals come from non-seasonal fits"
        )
    mean = forecast_panel(values, horizon, final, n_jobs, only=(chosen,))[chosen]
    if backtested:
        low, high = _conformal_interval(bt, chosen, values, mean, level)
        method = "conformal, on the backtest's errors"
    else:
        low, high, method = _fallback_interval(values, mean, chosen, level)
    growth = growth_of_values(values, season_length, growth_window)
    q = q_values(growth.p)
    return PanelForecast(
        model=chosen,
        season_length=final.season_length,
        mean=np.clip(mean, 0, None),
        low=np.clip(low, 0, None),
        high=np.clip(high, 0, None),
        level=level,
        interval_method=method,
        backtest=result,
        growth=growth,
        q=q,
        labels=labels(growth.slope, q, fdr),
        notes=notes,
    )
