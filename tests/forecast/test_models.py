"""The baselines against forecasts computed by hand on tiny series, and the models' fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from trendgen.forecast.models import forecast_panel, plan_models

SERIES = np.array([[1.0, 3.0, 2.0, 4.0, 3.0, 5.0, 4.0, 6.0, 5.0, 7.0]])  # season 2, rising 0.5 a period


def forecasts(models: tuple[str, ...], season: int = 2, horizon: int = 3) -> dict[str, np.ndarray]:
    plan = plan_models(SERIES.shape[1], season, models)
    return forecast_panel(SERIES, horizon, plan)


def test_each_baseline_matches_its_hand_computed_forecast():
    f = forecasts(("seasonal_naive", "naive", "drift", "mean", "linear"))
    assert f["seasonal_naive"][0] == pytest.approx([5.0, 7.0, 5.0])  # the last season, repeated
    assert f["naive"][0] == pytest.approx([7.0, 7.0, 7.0])
    drift = (7.0 - 1.0) / 9  # the mean change over the history
    assert f["drift"][0] == pytest.approx([7 + drift, 7 + 2 * drift, 7 + 3 * drift])
    assert f["mean"][0] == pytest.approx([4.0] * 3)
    t = np.arange(10.0)
    slope, intercept = np.polyfit(t, SERIES[0], 1)
    assert f["linear"][0] == pytest.approx(intercept + slope * np.array([10.0, 11.0, 12.0]))


def test_ets_and_theta_follow_a_clean_seasonal_series():
    t = np.arange(48)
    season = np.tile([0.1, 0.3, 0.2, 0.0], 12)
    values = (0.2 + season + 0.002 * t)[None, :]
    plan = plan_models(48, 4, ("ets", "theta", "ensemble"))
    f = forecast_panel(values, 4, plan)
    truth = 0.2 + np.array([0.1, 0.3, 0.2, 0.0]) + 0.002 * np.arange(48, 52)
    for model in ("ets", "theta", "ensemble"):
        assert np.abs(f[model][0] - truth).max() < 0.03, model  # within 6% of shares of 0.3 to 0.6
    assert f["ensemble"][0] == pytest.approx((f["ets"][0] + f["theta"][0]) / 2)


def test_short_histories_fall_back_and_say_so():
    plan = plan_models(30, 52)
    assert plan.season_length == 1 and "shorter than two seasons" in plan.notes[0]
    plan = plan_models(5, 12)
    assert plan.default == "linear" and "ets" not in plan.models and "too few" in plan.notes[-1]
    assert plan_models(2, 1).default == "drift"
