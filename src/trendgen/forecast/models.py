"""The forecasting models: the baselines every forecasting paper reports, and trendgen's default.

Registry (`MODELS`), each fitted per series on its history and forecasting `horizon` periods ahead:

- `seasonal_naive`: the value one season earlier; `naive`: the last value; `drift`: the last value plus the
  mean change; `mean`: the history's mean; `linear`: a least-squares line (all a few periods support);
- `ets`: exponential smoothing, the statsforecast `AutoETS` (model chosen by AICc); for seasons longer than
  24 periods (52 weeks), where seasonal ETS is both slow (166 ms a weekly series) and unstable (R's
  `forecast::ets` refuses them), additive-error ETS on the STL-adjusted series (`MSTL` with an `AutoETS`
  trend): as accurate as any-error ETS there, at 11.8 against 15.9 ms a series;
- `theta`: statsforecast's `Theta`, the standard Theta method with classical seasonal decomposition when the
  season tests significant. `AutoTheta`, which also tries the optimised and dynamic variants, forecast the
  simulated panel no better (MASE equal to 3 decimals at 13 and 26 weeks) at 5 times the cost;
- `ensemble`: the mean of `ets` and `theta`.

trendgen's default forecast (`forecast.model=auto`) is the one of `ets`, `theta` and `ensemble` with the
lowest seasonal MASE in the panel's backtest (the ensemble when there is no backtest). Measured on the
simulated panel (docs/forecasting.md): no one of the three is best at every horizon, and a choice per panel
costs nothing more than the backtest it reads; a choice per series, from three origins, is noisier.

Seasonal models need two seasons of history; `plan_models` falls back to non-seasonal ones (and says so)
when there are fewer, and to `linear` when there are too few points for ETS and Theta.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

MODELS = ("seasonal_naive", "naive", "drift", "mean", "linear", "ets", "theta", "ensemble")
CANDIDATES = ("ets", "theta", "ensemble")  # what forecast.model=auto chooses among, by backtest
BASELINES = ("seasonal_naive", "naive", "drift", "mean", "ets", "theta")
MIN_FIT_POINTS = 8  # fewer points than this: no ETS or Theta (statsforecast refuses them as tiny)
_STATSFORECAST = ("seasonal_naive", "naive", "drift", "mean", "ets", "theta")


@dataclass(frozen=True)
class ModelPlan:
    """Which models run on a panel of `n_points`-long histories, and the season they use."""

    season_length: int  # 1: non-seasonal
    models: tuple[str, ...]
    default: str  # the model that forecasts without a backtest to choose: `ensemble`, or a short history's
    notes: list[str] = field(default_factory=list)


def plan_models(n_points: int, season_length: int, requested: tuple[str, ...] = MODELS) -> ModelPlan:
    """The models to run for histories of `n_points` (the shortest a fit sees) and a season's length."""
    notes = []
    season = season_length
    if season > 1 and n_points < 2 * season:
        notes.append(
            f"the history ({n_points} periods) is shorter than two seasons ({2 * season}): "
            "non-seasonal models"
        )
        season = 1
    models = [m for m in requested if m in MODELS]
    default = "ensemble"
    if n_points < MIN_FIT_POINTS:
        dropped = [m for m in models if m in CANDIDATES]
        if dropped:
            notes.append(f"{n_points} periods are too few for ETS and Theta: the default is a straight line")
        models = [m for m in models if m not in dropped]
        default = "linear" if n_points >= 3 else "drift" if n_points >= 2 else "naive"
        if default not in models:
            models.append(default)
    if n_points < 2:
        models = [m for m in models if m in ("naive", "mean", "seasonal_naive")] or ["naive"]
    return ModelPlan(season_length=season, models=tuple(models), default=default, notes=notes)


def _statsforecast_model(name: str, season: int):
    from statsforecast.models import (
        MSTL,
        AutoETS,
        HistoricAverage,
        Naive,
        RandomWalkWithDrift,
        SeasonalNaive,
        Theta,
    )

    if name == "seasonal_naive":
        return SeasonalNaive(season_length=season, alias=name)
    if name == "naive":
        return Naive(alias=name)
    if name == "drift":
        return RandomWalkWithDrift(alias=name)
    if name == "mean":
        return HistoricAverage(alias=name)
    if name == "theta":
        return Theta(season_length=season, alias=name)
    if season > 24:
        return MSTL(season_length=season, trend_forecaster=AutoETS(model="AZN"), alias=name)
    return AutoETS(season_length=season, model="ZZZ" if season > 1 else "ZZN", alias=name)


def line_forecast(
    values: np.ndarray, horizon: int, positions: np.ndarray | None = None, level: float | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Least-squares lines through each row of `values` [S, T] over `positions` [T] (default 0..T-1; a
    calendar gap keeps its width), extended `horizon` periods past the last position: (mean [S, H], and
    with `level` and 3 points or more the prediction interval's low and high [S, H], else None, None)."""
    n_points = values.shape[1]
    t = np.arange(n_points, dtype=float) if positions is None else np.asarray(positions, dtype=float)
    tc = t - t.mean()
    sxx = max(float(tc @ tc), 1e-12)
    centre = values.mean(axis=1, keepdims=True)
    slope = (values - centre) @ tc / sxx
    ahead = t[-1] + np.arange(1, horizon + 1) - t.mean()
    mean = centre + slope[:, None] * ahead[None, :]
    if level is None or n_points < 3:
        return mean, None, None
    resid = values - centre - slope[:, None] * tc[None, :]
    scatter = np.sqrt((resid**2).sum(axis=1) / (n_points - 2))
    spread = np.sqrt(1 + 1 / n_points + ahead**2 / sxx)
    half = stats.t.ppf(0.5 + level / 2, n_points - 2) * scatter[:, None] * spread[None, :]
    return mean, mean - half, mean + half


def forecast_panel(
    values: np.ndarray, horizon: int, plan: ModelPlan, n_jobs: int = 1, only: tuple[str, ...] | None = None
) -> dict[str, np.ndarray]:
    """Point forecasts [S, horizon] of every model in `plan` (or `only` these) for the series `values` [S, T]
    (non-negative)."""
    n_series, n_points = values.shape
    out: dict[str, np.ndarray] = {}
    models = only or plan.models
    wanted = set(models) | ({"ets", "theta"} if "ensemble" in models else set())
    fitted = [m for m in _STATSFORECAST if m in wanted and not (m == "drift" and n_points < 2)]
    if fitted:
        import pandas as pd
        from statsforecast import StatsForecast

        frame = pd.DataFrame(
            {
                "unique_id": np.repeat(np.arange(n_series), n_points),
                "ds": np.tile(np.arange(n_points), n_series),
                "y": values.ravel(),
            }
        )
        engine = StatsForecast(
            models=[_statsforecast_model(m, plan.season_length) for m in fitted], freq=1, n_jobs=n_jobs
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = engine.forecast(df=frame, h=horizon).sort_values(["unique_id", "ds"])
        for m in fitted:
            out[m] = result[m].to_numpy(dtype=np.float64).reshape(n_series, horizon)
    if "linear" in wanted:
        out["linear"] = line_forecast(values, horizon)[0]
    if "ensemble" in wanted:
        out["ensemble"] = (out["ets"] + out["theta"]) / 2
    last = values[:, -1:]  # a fit that failed on a series (NaN) forecasts its last value instead
    return {m: np.clip(np.where(np.isfinite(out[m]), out[m], last), 0, None) for m in models if m in out}
