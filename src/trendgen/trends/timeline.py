"""Shares over periods with their uncertainty: one function for clusters and for caption attributes alike.

Given which category (a cluster, or a facet's best caption) each image falls in and which period it is from:

- `shares[p][c]`: the fraction of period p's images in category c, with a percentile interval from a seeded
  stratified bootstrap (`trend.bootstrap` resamples of each period's images; drawn as one multinomial per
  period, which is the same as resampling the images and counting);
- `growth` per category (`trendgen.forecast.growth`): the slope of its share over the last
  `trend.growth_window` periods against the periods before (share points per period; over all periods for a
  short timeline), with its bootstrap interval, the binomial z statistic, p-value and Benjamini-Hochberg
  q-value. `emerging` / `fading`: q <= `trend.fdr`, else `steady`. The design run then adjusts every growth
  test it made (clusters x facets x captions) as one family (`growth_family`);
- `forecast` per category (3 periods or more): the next period's share by `trendgen.forecast` (a straight line
  with its least-squares prediction interval on a short timeline; on a long one the backtested default, with
  conformal intervals), clipped to [0, 1]; `backtest`: the models' backtest scores when there is one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trendgen.forecast.growth import growth_of_counts, labels, q_values
from trendgen.forecast.models import line_forecast
from trendgen.forecast.panel import BacktestSetup, forecast_values

GROWTH_LABELS = ("emerging", "fading", "steady")
TIMELINE_MODELS = ("naive", "drift", "mean", "linear", "ets", "theta", "ensemble")


def _forecast(
    shares: np.ndarray, positions: np.ndarray, season_length: int, level: float
) -> tuple[list[dict[str, Any]], Any]:
    """Each category's share one period after the last with its interval, and the backtest (or None). A
    timeline with a missing calendar period is forecast by a line on the positions."""
    backtest = None
    if np.all(np.diff(positions) == 1):
        result = forecast_values(
            shares.T, 1, season_length, level, BacktestSetup(horizon=1, origins=3, step=1), TIMELINE_MODELS
        )
        mean, low, high = result.mean[:, 0], result.low[:, 0], result.high[:, 0]
        if result.backtest:
            backtest = {**result.backtest, "model": result.model, "interval_method": result.interval_method}
    else:
        mean, low, high = (a[:, 0] for a in line_forecast(shares.T, 1, positions, level))
    out = [
        {
            "share": round(float(np.clip(mean[c], 0, 1)), 6),
            "interval": [round(float(np.clip(low[c], 0, 1)), 6), round(float(np.clip(high[c], 0, 1)), 6)],
        }
        for c in range(shares.shape[1])
    ]
    return out, backtest


def share_timeline(
    categories: np.ndarray,
    period_of_row: np.ndarray,
    positions: list[int],
    n_categories: int,
    bootstrap: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    fdr: float = 0.05,
    growth_window: int = 8,
    season_length: int = 1,
) -> dict[str, Any]:
    """Shares, intervals, growth and forecasts of `n_categories` over the periods.

    `categories[i]`: image i's category (negative: left out, e.g. a dropped duplicate); `period_of_row[i]`:
    the index of its period in `positions` (the periods' places on the time axis, increasing). Returns
    {`counts` [P][C], `totals` [P], `shares` [P][C], `intervals` [P][C][2], `growth` [C] ({label, slope,
    interval, statistic, p, q}), `forecast` [C] or None, `backtest` or None, `alpha`, `fdr`}.
    """
    keep = categories >= 0
    n_periods = len(positions)
    counts = np.zeros((n_periods, n_categories), dtype=np.int64)
    np.add.at(counts, (period_of_row[keep], categories[keep]), 1)
    totals = counts.sum(axis=1)
    shares = counts / np.maximum(totals, 1)[:, None]
    rng = np.random.default_rng(seed)
    draws = np.stack([rng.multinomial(n, p, size=bootstrap) for n, p in zip(totals, shares, strict=True)], 1)
    boot = draws / np.maximum(totals, 1)[None, :, None]  # [B, P, C]
    intervals = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)  # [2, P, C]
    growth: list[dict[str, Any]] = []
    forecast, backtest = None, None
    if n_periods >= 2:
        pos = np.asarray(positions, dtype=float)
        tests = growth_of_counts(counts, totals, pos, season_length, growth_window)
        q = q_values(tests.p)
        named = labels(tests.slope, q, fdr)
        # the slope's interval: the same test's slope over the bootstrap draws
        # (categories are tested column by column, so all draws go through as one [P, B * C] table)
        n_draws = draws.shape[0]
        stacked = draws.transpose(1, 0, 2).reshape(n_periods, n_draws * n_categories)
        tested = growth_of_counts(stacked, totals, pos, season_length, growth_window)
        boot_slopes = tested.slope.reshape(n_draws, n_categories)
        low, high = np.quantile(boot_slopes, [alpha / 2, 1 - alpha / 2], axis=0)
        for c in range(n_categories):
            growth.append(
                {
                    "label": named[c],
                    "slope": round(float(tests.slope[c]), 6),
                    "interval": [round(float(low[c]), 6), round(float(high[c]), 6)],
                    "statistic": round(float(tests.statistic[c]), 4),
                    "p": float(f"{tests.p[c]:.4g}"),
                    "q": float(f"{q[c]:.4g}"),
                }
            )
        if n_periods >= 3:
            forecast, backtest = _forecast(shares, pos, season_length, 1 - alpha)
    else:
        growth = [{"label": "steady", "slope": None, "interval": None, "note": "one period"}] * n_categories
    return {
        "counts": counts.tolist(),
        "totals": totals.tolist(),
        "shares": np.round(shares, 6).tolist(),
        "intervals": np.round(np.moveaxis(intervals, 0, -1), 6).tolist(),
        "growth": growth,
        "forecast": forecast,
        "backtest": backtest,
        "alpha": alpha,
        "fdr": fdr,
    }


def timeline_settings(trend: Any) -> dict[str, Any]:
    """`share_timeline`'s settings from the `trend` config node: bootstrap, alpha (1 - confidence), seed,
    fdr, growth window and the season's length (`trend.season_length`, else by `trend.period_unit`)."""
    from trendgen.forecast.series import SEASON_LENGTHS

    season = trend.get("season_length") or SEASON_LENGTHS.get(str(trend.get("period_unit") or "month"), 1)
    return {
        "bootstrap": int(trend.bootstrap),
        "alpha": 1 - float(trend.confidence),
        "seed": int(trend.seed),
        "fdr": float(trend.fdr),
        "growth_window": int(trend.growth_window),
        "season_length": int(season),
    }


def most_significant_growth(growth: list[dict[str, Any]]) -> int | None:
    """The category labelled emerging with the largest slope; None when nothing grows significantly."""
    emerging = [c for c, g in enumerate(growth) if g["label"] == "emerging"]
    return max(emerging, key=lambda c: growth[c]["slope"]) if emerging else None


def _growth_entries(trend: dict[str, Any]) -> list[dict[str, Any]]:
    entries = [c["growth"] for c in trend.get("clusters") or [] if isinstance(c.get("growth"), dict)]
    attributes = (trend.get("timeline") or {}).get("attributes") or {}
    for series in attributes.values():
        entries += [g for g in series.get("growth") or [] if isinstance(g, dict)]
    return [g for g in entries if g.get("p") is not None]


def growth_family(trend: dict[str, Any], fdr: float) -> dict[str, Any] | None:
    """Adjust every growth test of a design run (its clusters and every facet's captions) as one family:
    each entry's `q` and `label` become the family's (Benjamini-Hochberg at `fdr`); returns the summary
    (`count`, `method`, `fdr`, `emerging`, `fading`), also set as `trend["growth_tests"]`. None: no tests."""
    entries = _growth_entries(trend)
    if not entries:
        return None
    q = q_values(np.array([g["p"] for g in entries]))
    named = labels(np.array([g["slope"] for g in entries]), q, fdr)
    for g, qi, label in zip(entries, q, named, strict=True):
        g["q"], g["label"] = float(f"{qi:.4g}"), label
    summary = {
        "count": len(entries),
        "method": "Benjamini-Hochberg",
        "fdr": fdr,
        "emerging": named.count("emerging"),
        "fading": named.count("fading"),
    }
    trend["growth_tests"] = summary
    return summary
