"""Growth tests for trend series, and labels that control the false discoveries over all of them.

A series' growth is measured over its last `window` periods against what its history leads one to expect:

- with a history before the window (3 periods or more): the baseline is the mean of the `4 x window` periods
  before it, after taking off the seasonal profile (each phase's mean deviation from a centred moving average)
  when that history holds two seasons, so a summer peak is not growth. The slope is the least-squares rise
  per period of the window's points above the baseline (a line through the baseline at the window's start);
  its variance counts the baseline's own uncertainty;
- without one (a short photo timeline): the least-squares slope over all the periods.

The noise behind the test: a table of values uses the baseline's scatter (a t test, baseline - 1 degrees of
freedom; all periods' residuals for the plain slope); photo timelines, whose counts are known, use the
binomial variance of the pooled share (a z test; the plain slope is then the Cochran-Armitage test).

Every test of one run (clusters x facets x captions, or every series of a table) is one family: its p-values
become Benjamini-Hochberg q-values (scipy), and a series is `emerging` (slope > 0) or `fading` (slope < 0)
where q <= `fdr`, else `steady`. At `fdr` 0.05, among the series called moving at most 5% are expected flat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

LABELS = ("emerging", "fading", "steady")


@dataclass(frozen=True)
class GrowthTests:
    """Per series: slope (per period), test statistic, two-sided p-value; `seasonal`: season taken off."""

    slope: np.ndarray
    statistic: np.ndarray
    p: np.ndarray
    seasonal: bool
    window: int


def seasonal_profile(history: np.ndarray, season_length: int) -> np.ndarray:
    """Per row of `history` [S, T] (T >= 2 seasons): each phase's mean deviation from the centred moving
    average of one season (2 x m for even m), centred to sum 0: [S, m]; column t's phase is t % m."""
    m = season_length
    kernel = np.ones(m + 1) / m if m % 2 == 0 else np.ones(m) / m
    if m % 2 == 0:
        kernel[0] = kernel[-1] = 0.5 / m
    half = len(kernel) // 2
    windows = np.lib.stride_tricks.sliding_window_view(history, len(kernel), axis=1)
    trend = windows @ kernel  # the centred moving average: columns half .. T-half-1
    detrended = history[:, half : half + trend.shape[1]] - trend
    phases = (np.arange(trend.shape[1]) + half) % m
    profile = np.stack([detrended[:, phases == k].mean(axis=1) for k in range(m)], axis=1)
    return profile - profile.mean(axis=1, keepdims=True)


BASELINE_WINDOWS = 4  # the baseline: this many windows' worth of periods before the window


def _adjusted(
    values: np.ndarray, season_length: int, history: int, contiguous: bool = True
) -> tuple[np.ndarray, bool]:
    """`values` [S, T] less the seasonal profile of its first `history` columns, where those hold two
    seasons and no missing periods; else `values` as they are."""
    if season_length <= 1 or not contiguous or history < 2 * season_length + 1:
        return values, False
    profile = seasonal_profile(values[:, :history], season_length)
    return values - profile[:, np.arange(values.shape[1]) % season_length], True


def _no_test(n: int, slope: np.ndarray | None = None, window: int = 0) -> GrowthTests:
    zeros = np.zeros(n)
    return GrowthTests(zeros if slope is None else slope, zeros, np.ones(n), False, window)


def _line_through_baseline(x: np.ndarray, d: np.ndarray, var_d: np.ndarray, var_base: np.ndarray) -> tuple:
    """Slope of deviations d [S, W] above a baseline at x [W] (periods after the window's start), and its
    variance given each point's variance var_d [S, W] (or [S, 1]) and the baseline mean's var_base [S]."""
    sxx = float(x @ x)
    slope = d @ x / sxx
    variance = (var_d * x * x).sum(axis=1) / sxx**2 + var_base * x.sum() ** 2 / sxx**2
    return slope, variance


def growth_of_values(values: np.ndarray, season_length: int = 1, window: int = 8) -> GrowthTests:
    """Growth tests of each row of `values` [S, T] over its last `window` periods (t tests)."""
    n_series, n_points = values.shape
    w = min(window, n_points)
    base_len = min(BASELINE_WINDOWS * window, n_points - w)
    if base_len >= 3:
        y, seasonal = _adjusted(values, season_length, n_points - w)
        base = y[:, n_points - w - base_len : n_points - w]
        x = np.arange(1, w + 1, dtype=float)
        var = base.var(axis=1, ddof=1)
        d = y[:, n_points - w :] - base.mean(axis=1, keepdims=True)
        inflate = 1 + season_length / (n_points - w) if seasonal else 1.0  # the profile's own error
        slope, variance = _line_through_baseline(x, d, inflate * var[:, None], var / base_len)
        df, seasonal_used = base_len - 1, seasonal
    elif n_points >= 3:
        t = np.arange(n_points, dtype=float) - (n_points - 1) / 2
        slope = (values - values.mean(axis=1, keepdims=True)) @ t / float(t @ t)
        resid = values - values.mean(axis=1, keepdims=True) - slope[:, None] * t[None, :]
        variance = (resid**2).sum(axis=1) / (n_points - 2) / float(t @ t)
        df, seasonal_used, w = n_points - 2, False, n_points
    else:  # two points: a change, untestable without a variance
        return _no_test(n_series, values[:, -1] - values[:, 0] if n_points == 2 else None, n_points)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(
            variance > 0, slope / np.sqrt(variance), np.where(slope != 0, np.inf * np.sign(slope), 0.0)
        )
    return GrowthTests(slope, stat, 2 * stats.t.sf(np.abs(stat), df=df), seasonal_used, w)


def growth_of_counts(
    counts: np.ndarray, totals: np.ndarray, positions: np.ndarray, season_length: int = 1, window: int = 8
) -> GrowthTests:
    """Growth tests of categories' shares from counts [P, C] of totals [P] at `positions` [P] (the periods'
    places on the time axis; a missing calendar period keeps its gap): z tests with binomial variances."""
    n_points, n_cats = counts.shape
    if n_points < 2:
        return _no_test(n_cats, window=n_points)
    pos = np.asarray(positions, dtype=float)
    n = np.asarray(totals, dtype=float)
    shares = counts / np.maximum(n, 1)[:, None]
    w = min(window, n_points)
    base_len = min(BASELINE_WINDOWS * window, n_points - w)
    if base_len >= 3:
        contiguous = bool(np.all(np.diff(pos) == 1))
        y, seasonal = _adjusted(shares.T, season_length, n_points - w, contiguous)
        lo, hi = n_points - w - base_len, n_points - w
        pooled = counts[lo:].sum(axis=0) / max(float(n[lo:].sum()), 1.0)  # the share under "no change"
        base_n = n[lo:hi]
        base_mean = (y[:, lo:hi] * base_n).sum(axis=1) / max(float(base_n.sum()), 1.0)
        noise = pooled * (1 - pooled)
        inflate = 1 + season_length / (n_points - w) if seasonal else 1.0  # the profile's own error
        slope, variance = _line_through_baseline(
            pos[hi:] - pos[hi - 1],
            y[:, hi:] - base_mean[:, None],
            inflate * noise[:, None] / np.maximum(n[hi:], 1)[None, :],
            noise / max(float(base_n.sum()), 1.0),
        )
    else:  # Cochran-Armitage over every period
        seasonal, w = False, n_points
        pooled = counts.sum(axis=0) / max(float(n.sum()), 1.0)
        tc = pos - (n @ pos) / max(float(n.sum()), 1.0)
        sxx = max(float((n * tc * tc).sum()), 1e-12)
        slope = (n * tc) @ shares / sxx
        variance = pooled * (1 - pooled) / sxx
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(variance > 0, slope / np.sqrt(variance), 0.0)
    return GrowthTests(slope, stat, 2 * stats.norm.sf(np.abs(stat)), seasonal, w)


def q_values(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values of one family of tests."""
    p = np.nan_to_num(np.asarray(p, dtype=float), nan=1.0)  # an untestable series counts as no evidence
    return stats.false_discovery_control(p, method="bh") if p.size else p


def labels(slope: np.ndarray, q: np.ndarray, fdr: float) -> list[str]:
    """`emerging` / `fading` where q <= fdr (by the slope's sign), else `steady`."""
    return [
        "steady" if qi > fdr or s == 0 else "emerging" if s > 0 else "fading"
        for s, qi in zip(slope, q, strict=True)
    ]
