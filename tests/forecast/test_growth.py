"""Growth tests and their false-discovery control: flat panels stay quiet, a rise is caught within periods."""

from __future__ import annotations

import numpy as np
from scipy import stats

from trendgen.forecast.growth import growth_of_counts, growth_of_values, labels, q_values, seasonal_profile


def test_q_values_are_benjamini_hochberg():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    # sorted 0.01 0.03 0.04 0.5 -> 0.04, 0.04*4/3... : p * m / rank, then the running minimum from the top
    # p * m / rank over the sorted p (0.04, 0.06, 0.0533, 0.5), then the running minimum from the largest
    assert np.allclose(q_values(p), [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    assert labels(np.array([1.0, -1.0, 1.0]), np.array([0.01, 0.02, 0.2]), 0.05) == [
        "emerging",
        "fading",
        "steady",
    ]


def binomial_panel(latent: np.ndarray, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).binomial(n, latent) / n


def test_a_flat_panel_with_and_without_a_season_has_at_most_its_share_of_false_calls():
    t = np.arange(160)
    rng = np.random.default_rng(3)
    level = rng.uniform(0.05, 0.2, (200, 1))
    for latent in (
        level * np.ones((1, 160)),
        level * (1 + 0.5 * np.sin(2 * np.pi * t / 52 + rng.uniform(0, 6, (200, 1)))),
    ):
        tests = growth_of_values(binomial_panel(latent, 400, 4), 52, 8)
        called = np.array(labels(tests.slope, q_values(tests.p), 0.05)) != "steady"
        assert called.mean() <= 0.05
        assert 0.0 <= (tests.p < 0.05).mean() <= 0.12  # the raw tests roughly at their level


def test_a_rise_of_one_point_a_period_is_emerging_within_six_periods():
    t0, n = 150, 400
    latent = np.random.default_rng(5).uniform(0.05, 0.2, (60, 1)) * np.ones((1, t0 + 6))
    latent[:, t0:] += 0.01 * np.arange(1, 7)
    tests = growth_of_values(binomial_panel(latent, n, 6), 52, 8)
    called = np.array(labels(tests.slope, q_values(tests.p), 0.05))
    assert (called == "emerging").mean() >= 0.9


def test_a_summer_peak_is_not_growth():
    t = np.arange(52 * 3 + 8)
    latent = 0.1 + 0.06 * np.sin(2 * np.pi * t / 52)  # the window rides the rising half of the season
    values = binomial_panel(np.tile(latent, (40, 1)), 2000, 7)
    window = 13
    seasonal = growth_of_values(values, 52, window)
    assert seasonal.seasonal
    assert (np.array(labels(seasonal.slope, q_values(seasonal.p), 0.05)) != "steady").mean() <= 0.05
    # a slope test over the window alone calls most of them emerging
    naive_p = np.array([stats.linregress(np.arange(window), row[-window:]).pvalue for row in values])
    assert (q_values(naive_p) <= 0.05).mean() > 0.5


def test_counts_without_history_are_the_cochran_armitage_test():
    counts = np.array([[30, 70], [40, 60], [50, 50]])
    totals = counts.sum(axis=1)
    tests = growth_of_counts(counts, totals, np.arange(3.0), 1, 8)
    # by hand: the share of category 0 against time, weighted by n, with the pooled share's variance
    t, y, n = np.arange(3.0), counts[:, 0] / totals, totals.astype(float)
    tc = t - (n @ t) / n.sum()
    slope = (n * tc) @ y / (n * tc * tc).sum()
    pooled = counts[:, 0].sum() / n.sum()
    z = slope / np.sqrt(pooled * (1 - pooled) / (n * tc * tc).sum())
    assert tests.slope[0] == np.float64(slope) or abs(tests.slope[0] - slope) < 1e-12
    assert abs(tests.statistic[0] - z) < 1e-9 and abs(tests.p[0] - 2 * stats.norm.sf(abs(z))) < 1e-12


def test_the_seasonal_profile_recovers_a_planted_season():
    t = np.arange(104)
    season = np.tile([0.0, 0.2, 0.1, -0.3], 26)
    profile = seasonal_profile((1 + 0.01 * t + season)[None, :], 4)
    assert np.allclose(profile[0], [0.0, 0.2, 0.1, -0.3], atol=1e-9)
