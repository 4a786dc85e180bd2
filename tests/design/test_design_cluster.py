"""The cluster stage on planted embeddings: k, auto k, MiniBatchKMeans past the threshold, emerging trends."""

from __future__ import annotations

import json

import numpy as np
import pytest
from omegaconf import OmegaConf
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from trendgen.config import TrendConfig
from trendgen.design import cluster
from trendgen.errors import TrendgenError
from trendgen.trends.kmeans import FaissKMeans, make_kmeans


def blobs(sizes: list[int], dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around `len(sizes)` well-separated directions; the true labels."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[: len(sizes)] * 3.0
    x = np.concatenate([c + 0.1 * rng.standard_normal((n, dim)) for c, n in zip(centres, sizes, strict=True)])
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def trend_cfg(**overrides):
    return OmegaConf.merge(OmegaConf.structured(TrendConfig), {"n_init": 3, "exemplars": 2, **overrides})


def index_for(n_now: int, n_then: int = 0) -> dict:
    """An embed index of `n_then` baseline photos (if any), then `n_now` current ones."""
    periods = [{"label": "baseline", "position": 0}] if n_then else []
    return {
        "paths": [f"then_{i}.png" for i in range(n_then)] + [f"now_{i}.png" for i in range(n_now)],
        "sets": ["baseline"] * n_then + ["current"] * n_now,
        "periods": [*periods, {"label": "current", "position": len(periods)}],
    }


def run_stage(tmp_path, x, index, **trend):
    cfg = OmegaConf.create({"trend": trend_cfg(**trend)})
    cluster.run(cfg.trend, x, index, tmp_path)
    result = cluster.load(tmp_path)
    return result.record, result.centroids, result.labels


def test_clusters_sized_shared_and_numbered_by_size(tmp_path):
    x, truth = blobs([5, 20, 10])
    record, centroids, labels = run_stage(tmp_path, x, index_for(35), clusters=3)
    assert [c["size"] for c in record["clusters"]] == [20, 10, 5]  # cluster 0 is the largest
    assert [c["share"] for c in record["clusters"]] == pytest.approx([20 / 35, 10 / 35, 5 / 35], abs=1e-5)
    assert record["dominant_cluster"] == record["target_cluster"] == 0
    assert adjusted_rand_score(truth, labels) == 1.0
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-5)
    # exemplars: the members nearest the centroid, best first
    members = np.flatnonzero(labels == 0)
    nearest = members[np.argsort(-(x[members] @ centroids[0]))][:2]
    assert record["clusters"][0]["exemplars"] == [f"now_{i}.png" for i in nearest]


def test_auto_k_picks_the_planted_number_of_clusters(tmp_path):
    x, _ = blobs([12, 12, 12, 12])
    record, _, _ = run_stage(tmp_path, x, index_for(48), clusters="auto", auto_range=[2, 7])
    assert record["k"] == 4 and record["k_chosen_by"] == "silhouette"
    assert set(record["silhouette"]) == {"2", "3", "4", "5", "6", "7"}


def test_faiss_above_the_threshold_finds_the_same_clusters(tmp_path):
    x, truth = blobs([40, 30, 30])
    assert isinstance(make_kmeans(3, 100, 0, 3, large_threshold=99), FaissKMeans)
    assert isinstance(make_kmeans(3, 100, 0, 3, large_threshold=100), KMeans)
    record, _, labels = run_stage(tmp_path, x, index_for(100), clusters=3, minibatch_threshold=50)
    assert record["algorithm"] == "FaissKMeans"
    assert adjusted_rand_score(truth, labels) == 1.0


def test_faiss_kmeans_is_within_one_percent_of_exact_kmeans():
    """On 6,000 separable embeddings: inertia within 1% of scikit-learn's KMeans, the same partition."""
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((6, 64)).astype(np.float32)
    truth = rng.integers(0, 6, size=6000)
    x = centers[truth] + 0.3 * rng.standard_normal((6000, 64)).astype(np.float32)
    exact = KMeans(n_clusters=6, random_state=0, n_init=3).fit(x)
    fast = FaissKMeans(n_clusters=6, random_state=0, n_init=3).fit(x)
    assert fast.inertia_ <= 1.01 * exact.inertia_
    assert adjusted_rand_score(exact.labels_, fast.labels_) >= 0.99
    assert adjusted_rand_score(truth, fast.labels_) >= 0.99


def test_emerging_target_is_the_cluster_that_grew_most(tmp_path):
    # now: 60 of look A, 40 of look B; then: 90 of A, 10 of B. A dominates, B is emerging.
    now, _ = blobs([60, 40], seed=1)
    then, _ = blobs([90, 10], seed=2)
    x = np.concatenate([then, now])
    record, _, _ = run_stage(tmp_path, x, index_for(100, 100), clusters=2, target="emerging")
    a, b = record["clusters"]
    assert (a["size"], a["shares"]) == (60, [0.9, 0.6])
    assert (b["size"], b["shares"]) == (40, [0.1, 0.4])
    assert b["growth"]["slope"] == pytest.approx(0.3) and b["growth"]["label"] == "emerging"
    assert a["growth"]["slope"] == pytest.approx(-0.3) and a["growth"]["label"] == "fading"
    low, high = b["growth"]["interval"]
    assert 0 < low < 0.3 < high  # 100 photos a period: a 30-point rise is far outside the noise
    assert record["dominant_cluster"] == 0 and record["target_cluster"] == 1
    assert all(p.startswith("now_") for p in b["exemplars"])
    assert json.loads((tmp_path / "clusters.json").read_text())["target"] == "emerging"


def test_bad_settings_are_user_errors(tmp_path):
    x, _ = blobs([3, 3])
    with pytest.raises(TrendgenError, match="more than the 6 usable images"):
        run_stage(tmp_path, x, index_for(6), clusters=7)
    with pytest.raises(TrendgenError, match=r"needs at least two periods"):
        run_stage(tmp_path, x, index_for(6), clusters=2, target="emerging")
    with pytest.raises(TrendgenError, match="whole number or 'auto'"):
        run_stage(tmp_path, x, index_for(6), clusters="many")
    with pytest.raises(TrendgenError, match="at least 3 usable images"):
        run_stage(tmp_path, x[:2], index_for(2), clusters="auto")


def test_auto_is_the_default_and_the_target_reports_its_stability(tmp_path):
    x, truth = blobs([30, 10, 10, 10])
    assert TrendConfig().clusters == "auto"
    record, _, labels = run_stage(tmp_path, x, index_for(60))
    assert record["k"] == 4 and record["k_chosen_by"] == "silhouette"
    assert adjusted_rand_score(truth, labels) == 1.0
    stability = record["target_stability"]
    assert set(stability["jaccard"]) == {"seed+1", "seed+2", "seed+3", "k=3", "k=5"}
    assert stability["jaccard"]["seed+1"] == 1.0  # well-separated blobs: the same 30 images every time
    assert 0.0 < stability["min"] <= stability["mean"] <= 1.0


def test_auto_k_at_scale_is_chosen_on_a_sample(tmp_path):
    x, _ = blobs([400, 300, 300])
    record, _, labels = run_stage(tmp_path, x, index_for(1000), auto_range=[2, 5], auto_sample=120)
    assert record["k"] == 3
    assert np.bincount(labels).tolist() == [400, 300, 300]  # the final fit still labels every embedding


def test_identical_images_with_a_fixed_k_give_no_empty_cluster(tmp_path, caplog):
    a, b = np.eye(8, dtype=np.float32)[0], np.eye(8, dtype=np.float32)[1]
    x = np.stack([a] * 20 + [b] * 10)  # two distinct photos, reposted
    record, centroids, labels = run_stage(tmp_path, x, index_for(30), clusters=4)
    assert record["k"] == 2 and len(centroids) == 2 and record["empty_clusters_dropped"] == 2
    assert [c["size"] for c in record["clusters"]] == [20, 10]
    assert sorted(set(labels.tolist())) == [0, 1]
    assert "only 2 of 4 clusters hold any photo" in caplog.text


def test_auto_k_past_the_threshold_chooses_on_faiss_fits_and_finds_the_planted_k(tmp_path):
    x, truth = blobs([40, 30, 30])
    record, _, labels = run_stage(
        tmp_path, x, index_for(100), clusters="auto", auto_range=[2, 5], minibatch_threshold=50
    )
    assert record["k"] == 3 and record["algorithm"] == "FaissKMeans"
    assert adjusted_rand_score(truth, labels) == 1.0
    seeds = {name: v for name, v in record["target_stability"]["jaccard"].items() if name.startswith("seed")}
    assert seeds == {"seed+1": 1.0, "seed+2": 1.0, "seed+3": 1.0}  # other seeds find the same target
