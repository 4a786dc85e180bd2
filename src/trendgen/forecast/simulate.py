"""A simulated panel of trend shares: weekly shares drawn binomially from latent shares with a level, a trend,
a yearly season and noise, some series rising from near 0 (the emerging trends a forecaster must catch).

`simulate_panel` is what `scripts/simulate_trends.py` writes and what the forecasting tests and quality bars
score against; `flat_panel` and `rising_panel` are the label bars' cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SimulatedPanel:
    """Observed shares [S, T] of S series over T periods, with the latent shares they were drawn from."""

    dates: np.ndarray  # [T] datetime64[D]
    names: list[str]
    shares: np.ndarray  # [S, T] observed: Binomial(photos, latent) / photos
    latent: np.ndarray  # [S, T]
    photos: np.ndarray  # [S, T] photos per period behind each share
    kinds: list[str]  # per series: steady | trending | seasonal | rising


def _weekly_dates(n: int, start: str = "2020-01-06") -> np.ndarray:
    return np.datetime64(start) + 7 * np.arange(n)


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def simulate_panel(
    n_series: int = 300,
    n_periods: int = 260,
    season_length: int = 52,
    photos: int = 400,
    seed: int = 0,
) -> SimulatedPanel:
    """Weekly shares of `n_series` series over `n_periods` weeks, `photos` photos a week on average.

    Each series has a latent logit share: a level (shares of 1-20%), a linear trend, a yearly season of
    random amplitude and phase (two harmonics, so peaks are not pure sines), AR(1) noise; a quarter of the
    series rise from near 0 along a logistic curve. Observed shares are binomial draws of the latent ones.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_periods, dtype=float)
    shares, latent, counts, kinds = [], [], [], []
    for _ in range(n_series):
        kind = rng.choice(["steady", "trending", "seasonal", "rising"], p=[0.2, 0.2, 0.35, 0.25])
        level = np.log(rng.uniform(0.01, 0.2) / (1 - 0.1))
        logit = np.full(n_periods, level)
        if kind in ("trending", "seasonal", "rising"):
            logit += rng.normal(0, 0.6) * t / n_periods
        if kind in ("seasonal", "rising") or rng.random() < 0.3:
            amp, phase = rng.uniform(0.2, 1.0), rng.uniform(0, 2 * np.pi)
            angle = 2 * np.pi * t / season_length + phase
            logit += amp * (np.sin(angle) + 0.4 * np.sin(2 * angle + rng.uniform(0, 2 * np.pi)))
        if kind == "rising":
            start, speed = rng.uniform(0.3, 0.8) * n_periods, rng.uniform(0.02, 0.08)
            logit += -4.0 + 4.0 * _logistic(speed * (t - start)) * rng.uniform(1.0, 1.5)
        noise = np.zeros(n_periods)
        for i in range(1, n_periods):
            noise[i] = 0.7 * noise[i - 1] + rng.normal(0, 0.05)
        p = _logistic(logit + noise)
        n = rng.poisson(photos, n_periods).clip(1)
        shares.append(rng.binomial(n, p) / n)
        latent.append(p)
        counts.append(n)
        kinds.append(str(kind))
    return SimulatedPanel(
        dates=_weekly_dates(n_periods),
        names=[f"series_{i:04d}" for i in range(n_series)],
        shares=np.asarray(shares),
        latent=np.asarray(latent),
        photos=np.asarray(counts),
        kinds=kinds,
    )
