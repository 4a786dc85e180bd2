"""Shares over periods: bootstrap intervals, growth labels on planted timelines, forecasts, dedup."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from trendgen.config import TrendConfig
from trendgen.design import cluster
from trendgen.forecast.growth import q_values
from trendgen.trends.timeline import growth_family, most_significant_growth, share_timeline


def timeline_rows(counts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(category, period) per row for counts[period][category]."""
    cats, periods = [], []
    for p, row in enumerate(counts):
        for c, n in enumerate(row):
            cats += [c] * n
            periods += [p] * n
    return np.array(cats), np.array(periods)


def test_shares_counts_and_intervals_around_them():
    cats, periods = timeline_rows([[30, 70], [50, 50]])
    t = share_timeline(cats, periods, [0, 1], 2, bootstrap=4000, seed=0)
    assert t["counts"] == [[30, 70], [50, 50]] and t["totals"] == [100, 100]
    assert t["shares"] == [[0.3, 0.7], [0.5, 0.5]]
    low, high = t["intervals"][0][0]
    # the binomial standard error at p=0.3, n=100 is 0.046: a 95% interval of about +-0.09
    assert low == pytest.approx(0.21, abs=0.02) and high == pytest.approx(0.39, abs=0.02)
    g = t["growth"]
    assert g[0]["slope"] == pytest.approx(0.2) and g[0]["label"] == "emerging"
    assert g[1]["slope"] == pytest.approx(-0.2) and g[1]["label"] == "fading"
    assert t["forecast"] is None  # two periods: no line to extrapolate with an interval


def test_a_rising_category_is_emerging_and_the_rest_are_not():
    # 6 periods of 300: category 0 rises from 4% to 34%, the other nine share the rest evenly
    rng = np.random.default_rng(1)
    rising = np.linspace(0.04, 0.34, 6)
    counts = [rng.multinomial(300, [r] + [(1 - r) / 9] * 9).tolist() for r in rising]
    cats, periods = timeline_rows(counts)
    t = share_timeline(cats, periods, list(range(6)), 10, seed=0)
    growth = t["growth"]
    assert growth[0]["label"] == "emerging" and growth[0]["interval"][0] > 0
    assert growth[0]["slope"] == pytest.approx(0.06, abs=0.01)
    assert most_significant_growth(growth) == 0
    assert all(g["label"] != "emerging" for g in growth[1:])
    forecast = t["forecast"][0]
    assert forecast["share"] == pytest.approx(0.40, abs=0.04)  # one period past 34% on a line of +6 points
    assert forecast["interval"][0] < forecast["share"] < forecast["interval"][1]


def test_flat_timelines_name_nothing_emerging():
    named = 0
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        counts = [rng.multinomial(300, [0.1] * 10).tolist() for _ in range(6)]
        cats, periods = timeline_rows(counts)
        growth = share_timeline(cats, periods, list(range(6)), 10, seed=seed)["growth"]
        named += most_significant_growth(growth) is not None
    assert named <= 1


def test_an_exact_line_is_forecast_on_the_line_and_left_out_rows_do_not_count():
    cats, periods = timeline_rows([[10, 90], [20, 80], [30, 70]])
    cats = np.concatenate([cats, [0, 0, 0]])  # three dropped duplicates, labelled -1 below
    periods = np.concatenate([periods, [2, 2, 2]])
    cats[-3:] = -1
    t = share_timeline(cats, periods, [0, 1, 2], 2, seed=0)
    assert t["totals"] == [100, 100, 100]
    assert t["forecast"][0]["share"] == pytest.approx(0.4)
    assert t["forecast"][0]["interval"] == pytest.approx([0.4, 0.4])  # a perfect fit leaves no scatter


def blobs_over_periods(shares_b: list[float], n: int = 200, seed: int = 0, noise: float = 0.1):
    """Two well-separated looks; per period, a share `shares_b[p]` of look B."""
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[:2] * 3
    rows, sets, paths = [], [], []
    for p, share in enumerate(shares_b):
        n_b = round(share * n)
        for look, count in ((0, n - n_b), (1, n_b)):
            rows.append(centres[look] + noise * rng.standard_normal((count, 8)))
            paths += [f"p{p}_look{look}_{i}.png" for i in range(count)]
            sets += [f"P{p}"] * count
    x = np.concatenate(rows)
    index = {
        "paths": paths,
        "sets": sets,
        "periods": [{"label": f"P{p}", "position": p} for p in range(len(shares_b))],
    }
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), index


def run_cluster(tmp_path, x, index, **trend):
    settings = {"n_init": 3, "exemplars": 2, "clusters": 2, **trend}
    cfg = OmegaConf.create({"trend": OmegaConf.merge(OmegaConf.structured(TrendConfig), settings)})
    cluster.run(cfg.trend, x, index, tmp_path)
    result = cluster.load(tmp_path)
    return result.record, result.centroids, result.labels


def test_the_cluster_stage_targets_the_rising_look_over_six_periods(tmp_path):
    x, index = blobs_over_periods([0.04, 0.10, 0.16, 0.22, 0.28, 0.34])
    record, _, _ = run_cluster(tmp_path, x, index, target="emerging")
    assert [p["label"] for p in record["periods"]] == [f"P{p}" for p in range(6)]
    assert [p["images"] for p in record["periods"]] == [200] * 6
    rising = record["clusters"][record["target_cluster"]]
    assert all("look1" in path for path in rising["exemplars"])
    assert rising["shares"] == pytest.approx([0.04, 0.10, 0.16, 0.22, 0.28, 0.34])
    assert rising["growth"]["label"] == "emerging" and rising["growth"]["interval"][0] > 0
    assert rising["forecast"]["share"] == pytest.approx(0.40)
    assert record["target_reason"].startswith("emerging")


def test_emerging_on_a_flat_timeline_says_so_and_keeps_the_dominant_target(tmp_path):
    x, index = blobs_over_periods([0.3] * 4)
    record, _, _ = run_cluster(tmp_path, x, index, target="emerging")
    assert all(c["growth"]["label"] == "steady" for c in record["clusters"])
    assert record["target_cluster"] == record["dominant_cluster"] == 0
    assert record["target_reason"].startswith("no cluster grows significantly")


def test_dedup_drops_reposts_before_the_shares_are_counted(tmp_path):
    x, index = blobs_over_periods([0.5, 0.5], n=40, noise=0.5)  # no two photos alike
    # look B of the last period reposted 60 times: without dedup it looks like a rising trend
    repost = np.flatnonzero([p.startswith("p1_look1") for p in index["paths"]])[0]
    x = np.concatenate([x, np.repeat(x[repost : repost + 1], 60, axis=0)])
    index["paths"] += [f"repost_{i}.png" for i in range(60)]
    index["sets"] += ["P1"] * 60
    inflated, _, _ = run_cluster(tmp_path, x, index)
    assert inflated["clusters"][0]["shares"] == pytest.approx([0.5, 80 / 100])
    record, _, labels = run_cluster(tmp_path, x, index, dedup=0.999)
    assert record["dedup"] == {"threshold": 0.999, "dropped": 60, "dropped_per_period": {"P0": 0, "P1": 60}}
    assert (labels[-60:] == -1).all() and (labels[:-60] >= 0).all()
    assert [c["shares"] for c in record["clusters"]] == [[0.5, 0.5], [0.5, 0.5]]


def test_a_long_timeline_is_backtested_and_forecast_by_the_chosen_model():
    rng = np.random.default_rng(2)
    rising = np.linspace(0.05, 0.30, 14)
    counts = [rng.multinomial(400, [r, 1 - r]).tolist() for r in rising]
    cats, periods = timeline_rows(counts)
    t = share_timeline(cats, periods, list(range(14)), 2, bootstrap=200, seed=0)
    backtest = t["backtest"]
    assert backtest["cutoffs"] == [11, 12, 13] and backtest["model"] == backtest["chosen"]
    assert set(backtest["scores"]) >= {"naive", "linear", "ets", "theta", "ensemble"}
    assert t["forecast"][0]["share"] == pytest.approx(0.32, abs=0.04)
    assert t["growth"][0]["label"] == "emerging"


def test_one_family_of_growth_tests_per_run():
    growth = [{"label": "emerging", "slope": 0.1, "p": p} for p in (0.01, 0.02, 0.03)]
    facet = [{"label": "emerging", "slope": -0.1, "p": 0.04}, {"label": "steady", "slope": 0.0, "p": 0.9}]
    trend = {
        "clusters": [{"growth": g} for g in growth],
        "timeline": {"attributes": {"colour": {"growth": facet}}},
    }
    summary = growth_family(trend, fdr=0.05)
    q = q_values(np.array([0.01, 0.02, 0.03, 0.04, 0.9]))
    assert [c["growth"]["q"] for c in trend["clusters"]] == pytest.approx(q[:3].tolist())
    assert summary == {"count": 5, "method": "Benjamini-Hochberg", "fdr": 0.05, "emerging": 3, "fading": 1}
    assert facet[0]["label"] == "fading" and facet[1]["label"] == "steady"


def test_a_missing_calendar_period_keeps_its_gap_in_the_forecast_and_the_interval_holds_the_slope():
    positions = [0, 1, 2, 8, 9]  # five months of shares on 0.1 + 0.02 * position, months 3 to 7 missing
    counts = [[round(1000 * (0.1 + 0.02 * p)), 1000 - round(1000 * (0.1 + 0.02 * p))] for p in positions]
    cats, periods = timeline_rows(counts)
    t = share_timeline(cats, periods, positions, 2, bootstrap=300, seed=0)
    assert t["forecast"][0]["share"] == pytest.approx(0.30, abs=1e-6)  # position 10, not the 6th in a row
    for g in t["growth"]:
        assert g["interval"][0] <= g["slope"] <= g["interval"][1]
