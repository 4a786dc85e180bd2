"""Shares over periods with their uncertainty: one function for clusters and for caption attributes alike.

Given which category (a cluster, or a facet's best caption) each image falls in and which period it is from:

- `shares[p][c]`: the fraction of period p's images in category c, with a percentile interval from a seeded
  stratified bootstrap (`trend.bootstrap` resamples of each period's images; drawn as one multinomial per
  period, which is the same as resampling the images and counting);
- `growth` per category: the least-squares slope of its share over the periods' positions (share points per
  period; with two periods, the change), with a bootstrap interval at the family-wise level `1 - alpha` over
  the categories compared (Bonferroni: each interval at `1 - alpha / C`), so a flat timeline of ten clusters
  names none `emerging` by chance more than `alpha` of the time. `emerging`: the interval lies above 0,
  `fading`: below 0, else `steady`;
- `forecast` per category (3 periods or more): the next period's share from a straight-line fit of the shares
  (statsmodels OLS), with its prediction interval (the period-to-period scatter included), clipped to [0, 1].
  A line is what a handful of periods can support; exponential smoothing or ARIMA need longer series than
  trend sets have.
"""

from __future__ import annotations

from typing import Any

import numpy as np

GROWTH_LABELS = ("emerging", "fading", "steady")


def _slopes(shares: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Least-squares slopes of shares [..., P, C] over positions [P]: [..., C]."""
    t = positions - positions.mean()
    return np.tensordot(t, shares - shares.mean(axis=-2, keepdims=True), axes=([0], [-2])) / (t @ t)


def _forecast(shares: np.ndarray, positions: np.ndarray, alpha: float) -> list[dict[str, Any]] | None:
    """Each category's share one period after the last, with its prediction interval (OLS on position)."""
    if len(positions) < 3:
        return None
    import statsmodels.api as sm

    x = sm.add_constant(positions.astype(float))
    ahead = np.array([[1.0, float(positions[-1] + 1)]])
    out = []
    for c in range(shares.shape[1]):
        fit = sm.OLS(shares[:, c], x).fit()
        frame = fit.get_prediction(ahead).summary_frame(alpha=alpha)
        low, high = float(frame["obs_ci_lower"].iloc[0]), float(frame["obs_ci_upper"].iloc[0])
        mean = float(frame["mean"].iloc[0])
        if not np.isfinite(low):  # a perfect fit (no residual degrees of freedom left): the line itself
            low = high = mean
        out.append(
            {
                "share": round(float(np.clip(mean, 0, 1)), 6),
                "interval": [round(float(np.clip(low, 0, 1)), 6), round(float(np.clip(high, 0, 1)), 6)],
            }
        )
    return out


def share_timeline(
    categories: np.ndarray,
    period_of_row: np.ndarray,
    positions: list[int],
    n_categories: int,
    bootstrap: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Shares, intervals, growth and forecasts of `n_categories` over the periods.

    `categories[i]`: image i's category (negative: left out, e.g. a dropped duplicate); `period_of_row[i]`:
    the index of its period in `positions` (the periods' places on the time axis, increasing). Returns
    {`counts` [P][C], `totals` [P], `shares` [P][C], `intervals` [P][C][2], `growth` [C] ({label, slope,
    interval}), `forecast` [C] or None, `alpha`}.
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
    growth = []
    if n_periods >= 2:
        pos = np.asarray(positions, dtype=float)
        slope, boot_slopes = _slopes(shares, pos), _slopes(boot, pos)
        level = alpha / max(1, n_categories)
        low, high = np.quantile(boot_slopes, [level / 2, 1 - level / 2], axis=0)
        for c in range(n_categories):
            label = "emerging" if low[c] > 0 else "fading" if high[c] < 0 else "steady"
            growth.append(
                {
                    "label": label,
                    "slope": round(float(slope[c]), 6),
                    "interval": [round(float(low[c]), 6), round(float(high[c]), 6)],
                }
            )
    else:
        growth = [{"label": "steady", "slope": None, "interval": None, "note": "one period"}] * n_categories
    return {
        "counts": counts.tolist(),
        "totals": totals.tolist(),
        "shares": np.round(shares, 6).tolist(),
        "intervals": np.round(np.moveaxis(intervals, 0, -1), 6).tolist(),
        "growth": growth,
        "forecast": _forecast(shares, np.asarray(positions), alpha) if n_periods >= 2 else None,
        "alpha": alpha,
    }


def most_significant_growth(growth: list[dict[str, Any]]) -> int | None:
    """The category labelled emerging with the largest slope; None when nothing grows significantly."""
    emerging = [c for c, g in enumerate(growth) if g["label"] == "emerging"]
    return max(emerging, key=lambda c: growth[c]["slope"]) if emerging else None
