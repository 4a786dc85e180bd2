"""k-means at scale beside the tool a user would pick instead: the cluster stage's engine and faiss.Kmeans.

On `--n` unit vectors of `--dim` dimensions around `--k` random directions (like CLIP embeddings of a few
looks), float32, side by side in one run, repeats interleaved:
- trendgen: `trendgen.trends.kmeans.make_kmeans` as the cluster stage calls it (`trend.n_init`, `trend.seed`,
  `trend.minibatch_threshold`), fit and assign every embedding;
- faiss: `faiss.Kmeans(dim, k)` at its defaults, trained, then every embedding assigned (`index.search`);
- scikit-learn `KMeans(n_init=1)`, once, as the inertia reference (`--no-exact` skips it).
Reported: seconds (best of `--repeats`), the time ratio to faiss, inertia relative to scikit-learn's and the
ARI to the planted labels.

    python scripts/bench_kmeans.py --n 1000000 --dim 512 --k 8 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cluster import blobs  # the same planted embeddings as the cluster benchmark


def inertia(x: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> float:
    total = 0.0
    for start in range(0, len(x), 100_000):
        rows = x[start : start + 100_000]
        total += float(((rows - centers[labels[start : start + 100_000]]) ** 2).sum())
    return total


def run_trendgen(x: np.ndarray, k: int, seed: int, n_init: int, threshold: int):
    from trendgen.trends.kmeans import make_kmeans

    km = make_kmeans(k, len(x), seed, n_init, threshold).fit(x)
    return km.cluster_centers_, km.labels_, type(km).__name__


def run_faiss(x: np.ndarray, k: int, seed: int):
    import faiss

    km = faiss.Kmeans(x.shape[1], k, seed=seed)  # its defaults otherwise
    km.train(x)
    _, labels = km.index.search(x, 1)
    return km.centroids, labels[:, 0], "faiss.Kmeans"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--spread", type=float, default=1.0)
    parser.add_argument("--n-init", type=int, default=10, help="trend.n_init (the default)")
    parser.add_argument("--threshold", type=int, default=50_000, help="trend.minibatch_threshold")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-exact", action="store_true")
    args = parser.parse_args()
    x, truth = blobs(args.n, args.dim, args.k, args.spread, seed=0)
    runs = {
        "trendgen": lambda: run_trendgen(x, args.k, 0, args.n_init, args.threshold),
        "faiss": lambda: run_faiss(x, args.k, 0),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    results = {}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            results[name] = fn()
            seconds[name].append(time.perf_counter() - start)
    reference = None
    if not args.no_exact:
        from sklearn.cluster import KMeans

        start = time.perf_counter()
        exact = KMeans(n_clusters=args.k, random_state=0, n_init=1).fit(x)
        exact_seconds = time.perf_counter() - start
        reference = inertia(x, exact.cluster_centers_, exact.labels_)
        results["scikit-learn KMeans (n_init=1)"] = (exact.cluster_centers_, exact.labels_, "KMeans")
        seconds["scikit-learn KMeans (n_init=1)"] = [exact_seconds]
    best_faiss = min(seconds["faiss"])
    print(f"| {args.n:,} x {args.dim}, k={args.k} | engine | seconds | x faiss | inertia / KMeans | ARI |")
    print("|---|---|---|---|---|---|")
    for name, (centers, labels, engine) in results.items():
        value = inertia(x, centers, labels)
        ratio = f"{value / reference:.4f}" if reference else "-"
        best = min(seconds[name])
        print(
            f"| {name} | {engine} | {best:.2f} | {best / best_faiss:.2f} | {ratio} "
            f"| {adjusted_rand_score(truth, labels):.4f} |"
        )


if __name__ == "__main__":
    main()
