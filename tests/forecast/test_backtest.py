"""Rolling-origin backtests: cut-offs, MASE by hand, and conformal intervals that cover what they say."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trendgen.forecast.backtest import backtest, naive_scale, origin_cutoffs, scores
from trendgen.forecast.models import plan_models
from trendgen.forecast.panel import BacktestSetup, forecast_values


def test_cutoffs_step_back_from_the_end():
    assert origin_cutoffs(20, horizon=3, origins=3, step=2) == [13, 15, 17]
    assert origin_cutoffs(6, horizon=3, origins=3, step=2) == [3]  # those with under 2 periods dropped


def test_mase_and_the_other_scores_against_a_hand_computation():
    values = np.array([[2.0, 4.0, 3.0, 5.0, 4.0, 6.0, 5.0, 7.0, 6.0, 9.0]])
    plan = plan_models(8, 1, ("naive",))
    bt = backtest(values, horizon=2, cutoffs=[8], plan=plan)
    # naive from the 8-period history: 7, 7; actual 6, 9
    errors = np.array([1.0, 2.0])
    scale = np.abs(np.diff(values[0, :8])).mean()  # in-sample naive MAE: 11/7
    assert naive_scale(values[:, :8], 1)[0] == pytest.approx(scale)
    s = scores(bt, level=0.8)["naive"]
    assert s["mae"] == pytest.approx(1.5)
    assert s["mase"] == pytest.approx(errors.mean() / scale, abs=1e-6)
    assert s["wape"] == pytest.approx(3 / 15, abs=1e-6)
    assert s["smape"] == pytest.approx(np.mean([2 * 1 / 13, 2 * 2 / 16]), abs=1e-6)
    assert s["by_horizon"]["mae"] == pytest.approx([1.0, 2.0])


def test_seasonal_mase_is_scaled_by_the_seasonal_naive_error():
    values = np.tile([1.0, 5.0], 6)[None, :] + np.arange(12) * 0.5
    assert naive_scale(values, 2)[0] == pytest.approx(1.0)  # a season back: always 2 x 0.5 lower


def test_intervals_cover_their_level_on_a_simulated_panel():
    rng = np.random.default_rng(0)
    n_series, n_points, n = 120, 60, 300
    latent = rng.uniform(0.05, 0.3, (n_series, 1)) + 0.002 * np.arange(n_points)[None, :]
    values = rng.binomial(n, latent) / n
    hold = 4
    result = forecast_values(
        values[:, :-hold], hold, 1, 0.8, BacktestSetup(origins=4), models=("naive", "linear"), model="linear"
    )
    inside = (values[:, -hold:] >= result.low) & (values[:, -hold:] <= result.high)
    # 480 held-out points: the binomial band of 80% coverage is about +-0.055 (3 sd: +-0.055)
    assert 0.74 <= inside.mean() <= 0.86
    assert result.interval_method.startswith("conformal")
    assert 0.74 <= result.backtest["scores"]["linear"]["coverage"] <= 0.86


def test_a_constant_series_beside_others_is_forecast_flat_and_left_out_of_mase():
    rng = np.random.default_rng(1)
    values = np.vstack([np.zeros(40), rng.binomial(200, 0.2, (3, 40)) / 200])
    result = forecast_values(values, 4, 1, 0.8, BacktestSetup(origins=2))
    assert result.mean[0] == pytest.approx([0.0] * 4) and result.labels[0] == "steady"
    assert result.low[0].min() >= 0 and (result.high[1:] > result.low[1:]).all()
    assert result.backtest["scores"]["naive"]["mase_series_left_out"] == 1


def test_scores_without_a_scale_or_a_second_origin_are_null_not_nan():
    constant = forecast_values(np.ones((3, 40)), 4, 1, 0.8, BacktestSetup(origins=2))
    naive = constant.backtest["scores"]["naive"]
    assert naive["mase"] is None and naive["by_horizon"]["mase"] == [None] * 4
    json.dumps(constant.backtest, allow_nan=False)  # forecast.json stays valid JSON
    noisy = np.random.default_rng(2).random((3, 40))
    single = forecast_values(noisy, 4, 1, 0.8, BacktestSetup(origins=1))
    assert single.backtest["scores"]["naive"]["coverage"] is None  # nothing out of sample to report


def test_the_forecast_keeps_the_season_the_backtest_histories_were_too_short_for():
    t = np.arange(130)  # 2.5 years of a weekly season: the backtest's first history (91) holds under two
    values = (1 + 0.5 * np.sin(2 * np.pi * t / 52))[None, :]
    result = forecast_values(values, 4, 52, 0.8, BacktestSetup(horizon=13, origins=3), model="ets")
    assert result.season_length == 52 and "the forecast uses the season" in result.notes[-1]
    assert result.mean[0] == pytest.approx(values[0, 78:82], abs=0.02)  # a season on, not a flat line
