"""Cluster stage: k-means over the embeddings of every period, the dominant and the emerging trend.

`trend.clusters` is `auto` (the default: k with the best silhouette over `trend.auto_range`, chosen on a
seeded sample at scale) or a fixed k. `target_stability` says how much the target cluster survives refits
with three other seeds and with k-1 and k+1 (Jaccard overlap of its members, 1.0 = the same images). Above
`trend.minibatch_threshold` embeddings, faiss replaces scikit-learn's KMeans (`trendgen.trends.kmeans`). With
`trend.dedup` (a cosine, e.g. 0.98), a photo that close to an earlier one (a repost) is dropped before
clustering: its label is -1.

The clusters are fit jointly over all periods (`trendgen.trends.periods`) and renumbered by size in the last
one (cluster 0 is the largest now: the dominant trend). Every cluster carries its share per period with a
bootstrap interval, its `growth` ({label: emerging | fading | steady, slope, interval}) and, from three
periods on, a one-period-ahead `forecast` (see `trendgen.trends.timeline`). `trend.target=emerging` makes the
cluster with the largest significant growth the target; when none grows significantly, the run says so and
the dominant cluster stays the target. `target_by` says which rule picked it (`dominant` or `emerging`): the
describe stage names the trend by it (`trendgen.design.naming`).

Artifacts (in `<output_dir>/cluster/`): `clusters.json` (the clusters, the periods, dominant, target and why,
k and how it was chosen, dedup) and `centroids.npy` (L2-normalised, one row per cluster, in the renumbered
order), `labels.npy` (per embedding, -1 for a dropped duplicate).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from trendgen.design.results import ClusterResult, EmbedResult
from trendgen.design.store import Stage
from trendgen.errors import TrendgenError
from trendgen.identity import config_subset
from trendgen.trends.kmeans import make_kmeans
from trendgen.trends.periods import period_rows

log = logging.getLogger(__name__)

CLUSTERS = "clusters.json"
CENTROIDS = "centroids.npy"
LABELS = "labels.npy"
SILHOUETTE_SAMPLE = 5000  # trend.clusters=auto: each k's silhouette on at most this many of the sample


def _sample(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The rows k is chosen on: all of them, or `size` drawn without replacement (seeded)."""
    if len(x) <= size:
        return np.arange(len(x))
    return np.sort(np.random.default_rng(seed).choice(len(x), size, replace=False))


def parse_k(setting: Any, n: int) -> int | None:
    """k from `trend.clusters` (checked against the n usable images); None for `auto`."""
    if isinstance(setting, str) and setting.strip().lower() == "auto":
        return None
    try:
        k = int(setting)
    except (TypeError, ValueError):
        raise TrendgenError(f"trend.clusters must be a whole number or 'auto', not {setting!r}") from None
    if k < 1:
        raise TrendgenError(f"trend.clusters must be at least 1, got {k}")
    if k > n:
        raise TrendgenError(f"trend.clusters={k} is more than the {n} usable images: lower k")
    return k


def choose_k(x: np.ndarray, cfg: Any) -> tuple[int, dict[int, float]]:
    """k from `trend.clusters`, or by silhouette over `trend.auto_range` when it is `auto`.

    At scale k is chosen on a seeded sample of `trend.auto_sample` embeddings (the silhouette itself on
    `SILHOUETTE_SAMPLE` of those), fit by the engine of the whole set (faiss past
    `trend.minibatch_threshold`): the choice costs the same at 100k embeddings as at 1M.
    """
    from sklearn.metrics import silhouette_score  # scikit-learn loads when a k is chosen

    n = len(x)
    k = parse_k(cfg.clusters, n)
    if k is not None:
        return k, {}
    low, high = (int(v) for v in cfg.auto_range)
    low, high = max(2, low), min(high, n - 1)
    if n < 3 or low > high:
        raise TrendgenError(
            f"trend.clusters=auto needs at least 3 usable images and a range within 2..n-1 "
            f"(have {n} images, auto_range={list(cfg.auto_range)})"
        )
    sample = x[_sample(x, int(cfg.auto_sample), cfg.seed)]
    scores: dict[int, float] = {}
    for k in range(low, high + 1):
        labels = make_kmeans(k, n, cfg.seed, cfg.n_init, cfg.minibatch_threshold).fit_predict(sample)
        if len(set(labels.tolist())) < 2:
            continue
        size = min(len(sample), SILHOUETTE_SAMPLE)
        scores[k] = float(silhouette_score(sample, labels, sample_size=size, random_state=cfg.seed))
    if not scores:
        raise TrendgenError("trend.clusters=auto: every k in auto_range gave a single cluster")
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, scores


def target_stability(x: np.ndarray, labels: np.ndarray, target: int, k: int, cfg: Any) -> dict[str, Any]:
    """How much the target cluster survives refits with other seeds and with k-1 and k+1.

    For each refit (on the same sample k was chosen on, by the whole set's engine), the Jaccard overlap of
    the target's members with the refit cluster that overlaps them most: 1.0 means the same images, whatever
    the seed or k.
    """
    rows = _sample(x, int(cfg.auto_sample), cfg.seed)
    sample, members = x[rows], labels[rows] == target
    refits = {f"seed+{d}": (k, int(cfg.seed) + d) for d in (1, 2, 3)}
    refits |= {f"k={kk}": (kk, int(cfg.seed)) for kk in (k - 1, k + 1) if 2 <= kk < len(sample)}
    overlap: dict[str, float] = {}
    for name, (kk, seed) in refits.items():
        other = make_kmeans(kk, len(x), seed, cfg.n_init, cfg.minibatch_threshold).fit_predict(sample)
        best = max((members & (other == c)).sum() / max(1, (members | (other == c)).sum()) for c in range(kk))
        overlap[name] = round(float(best), 4)
    values = list(overlap.values())
    summary = {"mean": round(float(np.mean(values)), 4), "min": round(min(values), 4)} if values else {}
    return {"jaccard": overlap, **summary}


def fit_clusters(x: np.ndarray, k: int, cfg: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels and L2-normalised centroids."""
    km = make_kmeans(k, len(x), cfg.seed, cfg.n_init, cfg.minibatch_threshold).fit(x)
    centroids = km.cluster_centers_.astype(np.float32)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    return km.labels_.astype(np.int64), centroids / np.maximum(norms, 1e-12)


def near_duplicates(x: np.ndarray, threshold: float, chunk: int = 2048) -> np.ndarray:
    """Rows whose cosine to an earlier row exceeds `threshold` (x L2-normalised; O(n^2), in chunks)."""
    dropped = np.zeros(len(x), dtype=bool)
    for start in range(0, len(x), chunk):
        rows = x[start : start + chunk]
        similarity = rows @ x[: start + len(rows)].T
        earlier = np.arange(start + len(rows))[None, :] < np.arange(start, start + len(rows))[:, None]
        dropped[start : start + len(rows)] = (np.where(earlier, similarity, -np.inf) > threshold).any(axis=1)
    return dropped


def _renumber_by_size(
    labels: np.ndarray, centroids: np.ndarray, in_last: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster 0 is the largest in the last period (ties: the larger overall, then the old id)."""
    k = len(centroids)
    kept = labels >= 0
    now = np.bincount(labels[in_last & kept], minlength=k)
    overall = np.bincount(labels[kept], minlength=k)
    order = sorted(range(k), key=lambda c: (-now[c], -overall[c], c))
    new_id = np.full(k + 1, -1, dtype=np.int64)  # index -1 (a dropped row) stays -1
    new_id[order] = np.arange(k)
    return new_id[labels], centroids[order]


def describe_clusters(
    x: np.ndarray,
    labels: np.ndarray,
    centroids: np.ndarray,
    index: dict[str, Any],
    n_exemplars: int,
    timeline: dict[str, Any],
) -> list[dict[str, Any]]:
    """Size and share now, shares over the periods with intervals, growth, forecast and exemplars."""
    paths = index["paths"]
    _, period = period_rows(index)
    in_last = period == period.max()
    similarity = x @ centroids.T
    clusters = []
    for c in range(len(centroids)):
        members = np.flatnonzero(labels == c)
        current = members[in_last[members]]
        pool = current if len(current) else members
        nearest = pool[np.argsort(-similarity[pool, c], kind="stable")][:n_exemplars]
        shares = [row[c] for row in timeline["shares"]]
        info: dict[str, Any] = {
            "id": c,
            "size": len(current),
            "share": shares[-1],
            "shares": shares,
            "intervals": [row[c] for row in timeline["intervals"]],
            "growth": timeline["growth"][c],
            "exemplars": [paths[i] for i in nearest],
        }
        if timeline["forecast"]:
            info["forecast"] = timeline["forecast"][c]
        clusters.append(info)
    return clusters


def choose_target(trend_target: str, clusters: list[dict[str, Any]], n_periods: int) -> tuple[int, str, str]:
    """(target cluster, the rule that picked it: dominant | emerging, why): the dominant one, or the one with
    the largest significant growth (the dominant one when none grows significantly)."""
    from trendgen.trends.timeline import most_significant_growth  # scipy: loaded by the stage that runs

    if trend_target == "dominant":
        return 0, "dominant", "dominant: the largest cluster in the last period"
    rising = most_significant_growth([c["growth"] for c in clusters])
    if rising is not None:
        g = clusters[rising]["growth"]
        why = f"emerging: the largest significant growth ({g['slope']:+.3f} share per period)"
        return rising, "emerging", why
    best = max(clusters, key=lambda c: c["growth"]["slope"])
    why = (
        f"no cluster grows significantly over the {n_periods} periods (the largest growth, cluster "
        f"{best['id']}, {best['growth']['slope']:+.3f} per period, interval {best['growth']['interval']}): "
        "the dominant cluster is the target"
    )
    log.warning("trend.target=emerging: %s", why)
    return 0, "dominant", why


def run(trend: Any, embeddings: np.ndarray, index: dict[str, Any], stage_dir: Path) -> list[str]:
    """Cluster the embeddings into `stage_dir`; returns the files written."""
    from trendgen.trends.timeline import share_timeline, timeline_settings  # scipy: only when clustering

    if trend.target not in ("dominant", "emerging"):
        raise TrendgenError(f"trend.target must be 'dominant' or 'emerging', not {trend.target!r}")
    periods, period = period_rows(index)
    if trend.target == "emerging" and len(periods) < 2:
        raise TrendgenError(
            "trend.target=emerging needs at least two periods: trend.periods, or trend.baseline_images "
            "(an earlier set of looks)"
        )
    dropped = near_duplicates(embeddings, float(trend.dedup)) if trend.get("dedup") else None
    kept = np.flatnonzero(~dropped) if dropped is not None else np.arange(len(embeddings))
    k, scores = choose_k(embeddings[kept], trend)
    labels = np.full(len(embeddings), -1, dtype=np.int64)
    labels[kept], centroids = fit_clusters(embeddings[kept], k, trend)
    sizes = np.bincount(labels[kept], minlength=k)
    empty = int((sizes == 0).sum())
    if empty:  # fewer distinct photos than k (identical images): k-means leaves clusters with nothing in them
        log.warning(
            "trend.clusters: only %d of %d clusters hold any photo (identical images); k=%d",
            k - empty,
            k,
            k - empty,
        )
        remap = np.full(k, -1, dtype=np.int64)
        remap[sizes > 0] = np.arange(k - empty)
        labels[kept], centroids, k = remap[labels[kept]], centroids[sizes > 0], k - empty
    labels, centroids = _renumber_by_size(labels, centroids, period == len(periods) - 1)
    positions = [int(p["position"]) for p in periods]
    timeline = share_timeline(labels, period, positions, k, **timeline_settings(trend))
    clusters = describe_clusters(embeddings, labels, centroids, index, int(trend.exemplars), timeline)
    target, target_by, why = choose_target(trend.target, clusters, len(periods))
    record = {
        "k": k,
        "k_chosen_by": "silhouette" if scores else "trend.clusters",
        "empty_clusters_dropped": empty,
        "silhouette": {str(key): round(val, 6) for key, val in scores.items()},
        "target_stability": (
            target_stability(embeddings[kept], labels[kept], target, k, trend) if k > 1 else {}
        ),
        "algorithm": type(make_kmeans(k, len(kept), 0, 1, trend.minibatch_threshold)).__name__,
        "periods": [{**p, "images": n} for p, n in zip(periods, timeline["totals"], strict=True)],
        "confidence": float(trend.confidence),
        "clusters": clusters,
        "dominant_cluster": 0,  # renumbered: the largest in the last period
        "target_cluster": target,
        "target": trend.target,
        "target_by": target_by,
        "target_reason": why,
        "backtest": timeline["backtest"],  # the clusters' shares backtested (a long timeline), else None
    }
    if dropped is not None:
        per_period = np.bincount(period[dropped], minlength=len(periods)).tolist()
        record["dedup"] = {
            "threshold": float(trend.dedup),
            "dropped": int(dropped.sum()),
            "dropped_per_period": dict(zip([p["label"] for p in periods], per_period, strict=True)),
        }
    (stage_dir / CLUSTERS).write_text(json.dumps(record, indent=1))
    np.save(stage_dir / CENTROIDS, centroids)
    np.save(stage_dir / LABELS, labels)
    return [CLUSTERS, CENTROIDS, LABELS]


def load(stage_dir: Path) -> ClusterResult:
    """The record, centroids and labels an earlier run of this stage wrote."""
    record = json.loads((stage_dir / CLUSTERS).read_text())
    return ClusterResult(record, np.load(stage_dir / CENTROIDS), np.load(stage_dir / LABELS))


def _run_stage(design: Any, folder: Path) -> tuple[list[str], dict[str, Any]]:
    embedded: EmbedResult = design.results["embed"]
    return run(design.cfg.trend, embedded.embeddings, embedded.index, folder), {}


STAGE = Stage(
    "cluster",
    inputs=("embed",),
    settings=lambda design: config_subset(
        design.cfg.trend,
        [
            "clusters",
            "auto_range",
            "auto_sample",
            "seed",
            "n_init",
            "target",
            "exemplars",
            "minibatch_threshold",
            "dedup",
            "bootstrap",
            "confidence",
        ],
    ),
    run=_run_stage,
    load=load,
)
