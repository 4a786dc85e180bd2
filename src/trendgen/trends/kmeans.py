"""The k-means engines the cluster stage chooses by size.

Up to `trend.minibatch_threshold` embeddings: scikit-learn's `KMeans` (exact Lloyd iterations from k-means++,
`trend.n_init` restarts). Above it: faiss (`faiss.Kmeans` trains on a sample of at most 256 points per
centroid, `trend.n_init` restarts, then assigns every embedding to its nearest centroid), or scikit-learn's
`MiniBatchKMeans` where faiss is not installed. All three have the scikit-learn names the stage reads
(`fit`, `fit_predict`, `labels_`, `cluster_centers_`, `inertia_`).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

FAISS_ITERATIONS = 25  # faiss.Kmeans's own default


class FaissKMeans:
    """k-means on faiss: trained on a seeded sample (`max_points_per_centroid` per centroid), every row then
    assigned to its nearest centroid."""

    def __init__(self, n_clusters: int, random_state: int = 0, n_init: int = 1) -> None:
        self.n_clusters, self.random_state, self.n_init = int(n_clusters), int(random_state), int(n_init)

    def fit(self, x: np.ndarray) -> FaissKMeans:
        import faiss

        rows = np.ascontiguousarray(x, dtype=np.float32)
        km = faiss.Kmeans(
            rows.shape[1],
            self.n_clusters,
            niter=FAISS_ITERATIONS,
            nredo=max(1, self.n_init),
            seed=self.random_state,
            verbose=False,
        )
        km.train(rows)
        distances, labels = km.index.search(rows, 1)
        self.cluster_centers_ = np.array(km.centroids, dtype=np.float32)
        self.labels_ = labels[:, 0].astype(np.int64)
        self.inertia_ = float(distances.sum())
        return self

    def fit_predict(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).labels_


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def make_kmeans(k: int, n: int, seed: int, n_init: int, large_threshold: int) -> Any:
    """The engine for `n` embeddings: KMeans up to `large_threshold`, faiss above (MiniBatchKMeans without
    faiss)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans  # loaded when a clustering runs

    if n <= large_threshold:
        return KMeans(n_clusters=k, random_state=seed, n_init=n_init)
    if faiss_available():
        return FaissKMeans(n_clusters=k, random_state=seed, n_init=n_init)
    return MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=n_init, batch_size=4096)
