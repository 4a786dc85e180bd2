"""Rolling-origin backtests, their scores and the conformal intervals they calibrate.

`backtest` refits every model at `origins` cut-offs, `step` periods apart, the last one `horizon` periods
before the end, and keeps each forecast's error on the `horizon` periods after its cut-off. Scores, per model,
over all series and origins, and per horizon step:

- `mae`; `wape` (the summed absolute error over the summed actuals: defined when shares are 0);
- `smape` (2|e| / (|y| + |yhat|), 0 where both are 0; 0 to 2);
- `mase`: seasonal MASE as the F1 benchmark defines it, the absolute error over the in-sample MAE of the
  seasonal naive forecast on the history before the cut-off (the naive one without a season); a history whose
  scale is 0 (constant) is left out of the mean and counted;
- `coverage`: how many actuals fall inside the conformal interval at `level`, each origin's interval
  calibrated on the other origins only (leave one origin out), so the figure is out of sample (None with a
  single origin).

Conformal intervals (split conformal, pooled over series): the absolute backtest errors, each divided by its
series' scale, give per horizon step the quantile q_h at `level` (the finite-sample rank ceil((n+1) level));
a forecast's interval is its mean +- q_h times its series' scale.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from trendgen.forecast.models import ModelPlan, forecast_panel


@dataclass(frozen=True)
class Backtest:
    """Forecast errors of each model at each cut-off: `errors[model]` [S, O, H] (forecast - actual)."""

    cutoffs: list[int]  # the history length at each origin
    horizon: int
    plan: ModelPlan
    actual: np.ndarray  # [S, O, H]
    forecasts: dict[str, np.ndarray]  # model -> [S, O, H]
    scale: np.ndarray  # [S, O] the in-sample (seasonal) naive MAE before each cut-off; NaN where 0

    @property
    def errors(self) -> dict[str, np.ndarray]:
        return {m: f - self.actual for m, f in self.forecasts.items()}


def naive_scale(values: np.ndarray, season_length: int) -> np.ndarray:
    """Per row of `values` [S, T]: the in-sample MAE of the seasonal naive forecast (naive where the row is
    shorter than a season and a period); NaN where it is 0."""
    lag = season_length if values.shape[1] > season_length else 1
    if values.shape[1] <= lag:
        return np.full(values.shape[0], np.nan)
    scale = np.abs(values[:, lag:] - values[:, :-lag]).mean(axis=1)
    return np.where(scale > 0, scale, np.nan)


def origin_cutoffs(n_points: int, horizon: int, origins: int, step: int) -> list[int]:
    """History lengths at each origin (oldest first), keeping those with at least 2 periods of history."""
    cuts = [n_points - horizon - (origins - 1 - o) * step for o in range(origins)]
    return [c for c in cuts if c >= 2]


def backtest(
    values: np.ndarray, horizon: int, cutoffs: list[int], plan: ModelPlan, n_jobs: int = 1
) -> Backtest:
    """Refit `plan`'s models at each cut-off and keep their forecasts of the next `horizon` periods."""
    actual = np.stack([values[:, c : c + horizon] for c in cutoffs], axis=1)
    runs = [forecast_panel(values[:, :c], horizon, plan, n_jobs) for c in cutoffs]
    forecasts = {m: np.stack([run[m] for run in runs], axis=1) for m in runs[0]}
    scale = np.stack([naive_scale(values[:, :c], plan.season_length) for c in cutoffs], axis=1)
    return Backtest(cutoffs, horizon, plan, actual, forecasts, scale)


def conformal_quantiles(scaled_errors: np.ndarray, level: float) -> np.ndarray:
    """Per horizon step, the split-conformal quantile at `level` of scaled absolute errors [N, H] (NaN rows
    ignored); steps with too few errors for the rank use the largest error."""
    out = []
    for column in scaled_errors.T:
        column = np.sort(column[np.isfinite(column)])
        if not len(column):
            out.append(np.nan)
            continue
        rank = int(np.ceil((len(column) + 1) * level)) - 1
        out.append(float(column[min(rank, len(column) - 1)]))
    return np.asarray(out)


def _coverage(bt: Backtest, model: str, level: float) -> np.ndarray:
    """[S, O, H] whether each actual falls inside its leave-one-origin-out conformal interval."""
    scaled = np.abs(bt.forecasts[model] - bt.actual) / bt.scale[:, :, None]
    inside = np.zeros(bt.actual.shape, dtype=bool)
    n_origins = len(bt.cutoffs)
    for o in range(n_origins):
        others = [i for i in range(n_origins) if i != o]
        q = conformal_quantiles(scaled[:, others].reshape(-1, bt.horizon), level)
        half = np.nan_to_num(q)[None, :] * np.nan_to_num(bt.scale[:, o], nan=0.0)[:, None]
        low = np.clip(bt.forecasts[model][:, o] - half, 0, None)
        inside[:, o] = (bt.actual[:, o] >= low - 1e-12) & (
            bt.actual[:, o] <= bt.forecasts[model][:, o] + half + 1e-12
        )
    return inside


def _round(x: np.ndarray | float) -> object:
    """Rounded numbers for JSON, None where there is none (NaN: no series had a scale, no coverage)."""
    rounded = np.round(np.asarray(x, dtype=float), 6)
    if rounded.ndim == 0:
        return float(rounded) if np.isfinite(rounded) else None
    return [float(v) if np.isfinite(v) else None for v in rounded]


def scores(bt: Backtest, level: float) -> dict[str, dict[str, object]]:
    """Per model: `mase`, `mae`, `smape`, `wape`, `coverage` over all series and origins, and `by_horizon`
    (each a list over the horizon steps); `mase_series_left_out` counts constant histories."""
    out = {}
    for model, forecast in bt.forecasts.items():
        err = np.abs(forecast - bt.actual)
        denom = np.abs(bt.actual) + np.abs(forecast)
        smape = np.where(denom > 0, 2 * err / np.where(denom > 0, denom, 1), 0.0)
        scaled = err / bt.scale[:, :, None]
        # one origin: no other to calibrate on, so no out-of-sample coverage to report
        inside = _coverage(bt, model, level) if len(bt.cutoffs) > 1 else np.full(bt.actual.shape, np.nan)
        flat = (-1, bt.horizon)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a mean over no series: None
            out[model] = {
                "mase": _round(np.nanmean(scaled)),
                "mae": _round(err.mean()),
                "smape": _round(smape.mean()),
                "wape": _round(err.sum() / max(float(np.abs(bt.actual).sum()), 1e-12)),
                "coverage": _round(inside.mean()),
                "by_horizon": {
                    "mase": _round(np.nanmean(scaled.reshape(flat), axis=0)),
                    "mae": _round(err.reshape(flat).mean(axis=0)),
                    "smape": _round(smape.reshape(flat).mean(axis=0)),
                    "wape": _round(
                        err.reshape(flat).sum(0) / np.maximum(np.abs(bt.actual).reshape(flat).sum(0), 1e-12)
                    ),
                    "coverage": _round(inside.reshape(flat).mean(axis=0)),
                },
                "mase_series_left_out": int(np.isnan(bt.scale).any(axis=1).sum()),
            }
    return out
