"""Forecasting trend series: tables of series (`series`), the models (`models`), rolling-origin backtests and
conformal intervals (`backtest`), growth tests with false-discovery control (`growth`), one call for a panel
(`panel`), its report (`report`), and a simulated panel to score against (`simulate`)."""

from trendgen.forecast.backtest import Backtest, backtest, scores
from trendgen.forecast.growth import GrowthTests, growth_of_counts, growth_of_values, labels, q_values
from trendgen.forecast.models import CANDIDATES, MODELS, ModelPlan, forecast_panel, plan_models
from trendgen.forecast.panel import BacktestSetup, PanelForecast, forecast_values
from trendgen.forecast.series import SEASON_LENGTHS, SeriesTable, read_series
from trendgen.forecast.simulate import SimulatedPanel, simulate_panel

__all__ = [
    "CANDIDATES",
    "MODELS",
    "SEASON_LENGTHS",
    "Backtest",
    "BacktestSetup",
    "GrowthTests",
    "ModelPlan",
    "PanelForecast",
    "SeriesTable",
    "SimulatedPanel",
    "backtest",
    "forecast_panel",
    "forecast_values",
    "growth_of_counts",
    "growth_of_values",
    "labels",
    "plan_models",
    "q_values",
    "read_series",
    "scores",
    "simulate_panel",
]
