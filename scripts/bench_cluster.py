"""Benchmark: k-means on 10k, 100k and 1M embeddings of 512 dimensions, KMeans against MiniBatchKMeans.

The data are unit vectors around `--k` random directions (like CLIP image embeddings of a few looks),
float32. Both estimators run with the settings the cluster stage uses (`trend.n_init`, `trend.seed`;
MiniBatchKMeans with batches of 4096). Reported per size: fit seconds, and MiniBatchKMeans's inertia and label
agreement relative to KMeans (1.0 = as good). The crossover is where MiniBatchKMeans becomes faster at a
quality cost worth paying; `trend.minibatch_threshold` switches the stage there.

    .venv/bin/python scripts/bench_cluster.py --sizes 10000,100000,1000000 --k 8 --n-init 3

With `--auto`, the table is instead the time of `trend.clusters=auto` as the cluster stage runs it (k chosen
by silhouette over `trend.auto_range` on a seeded sample of `trend.auto_sample`, then the final fit on every
embedding and the stability refits), side by side with choosing k on every embedding (the unsampled
baseline, run up to `--baseline-max` embeddings), and whether the two choose the same k:

    .venv/bin/python scripts/bench_cluster.py --auto --k 8 --n-init 10 --baseline-max 100000
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import base_parser, report, setup_torch, stopwatch


def blobs(n: int, dim: int, k: int, spread: float, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    labels = rng.integers(0, k, size=n)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in chunks: 1M x 512 float32 is 2 GB already
        stop = min(n, start + 100_000)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32) * spread / np.sqrt(dim)
        x[start:stop] = centers[labels[start:stop]] + noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="comma-separated numbers of embeddings"
    )
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=8, help="clusters (trend.clusters)")
    parser.add_argument("--n-init", type=int, default=3, help="restarts (trend.n_init)")
    parser.add_argument("--spread", type=float, default=1.2, help="noise norm around each direction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--auto", action="store_true", help="time trend.clusters=auto instead")
    parser.add_argument("--baseline-max", type=int, default=100_000, help="--auto: largest unsampled run")
    args = parser.parse_args()
    setup_torch(args.threads, "cpu")
    if args.auto:
        auto_k(args)
        return

    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.metrics import adjusted_rand_score
    from threadpoolctl import threadpool_limits

    rows = []
    with threadpool_limits(limits=args.threads):
        for n in (int(s) for s in args.sizes.split(",")):
            x, truth = blobs(n, args.dim, args.k, args.spread, args.seed)
            full = KMeans(n_clusters=args.k, n_init=args.n_init, random_state=args.seed)
            with stopwatch() as t_full:
                full.fit(x)
            mini = MiniBatchKMeans(
                n_clusters=args.k, n_init=args.n_init, random_state=args.seed, batch_size=4096
            )
            with stopwatch() as t_mini:
                mini.fit(x)
            mini_inertia = float(((x - mini.cluster_centers_[mini.predict(x)]) ** 2).sum())
            rows.append(
                [
                    f"{n:,}",
                    t_full["s"],
                    t_mini["s"],
                    t_full["s"] / t_mini["s"],
                    mini_inertia / float(full.inertia_),
                    adjusted_rand_score(full.labels_, mini.labels_),
                    adjusted_rand_score(truth, full.labels_),
                ]
            )
            del x, truth
    report(
        f"cluster: k={args.k}, n_init={args.n_init}, {args.dim}-d unit vectors, {args.threads} threads",
        [
            "embeddings",
            "KMeans s",
            "MiniBatchKMeans s",
            "speed-up",
            "MiniBatch inertia / KMeans",
            "label agreement (ARI)",
            "KMeans ARI vs truth",
        ],
        rows,
        [],
        args,
    )


def auto_k(args) -> None:
    """trend.clusters=auto as the stage runs it, against choosing k on all embeddings."""
    import numpy as np
    from omegaconf import OmegaConf
    from threadpoolctl import threadpool_limits

    from trendgen.config import TrendConfig
    from trendgen.design.cluster import choose_k, fit_clusters, target_stability

    stage = OmegaConf.merge(OmegaConf.structured(TrendConfig), {"n_init": args.n_init, "seed": args.seed})
    rows = []
    with threadpool_limits(limits=args.threads):
        for n in (int(s) for s in args.sizes.split(",")):
            x, _ = blobs(n, args.dim, args.k, args.spread, args.seed)
            with stopwatch() as t_choose:
                k, _ = choose_k(x, stage)
            with stopwatch() as t_rest:
                labels, _ = fit_clusters(x, k, stage)
                target = int(np.bincount(labels).argmax())
                stability = target_stability(x, labels, target, k, stage)
            baseline_k, t_base = "–", None
            if n <= args.baseline_max:
                unsampled = OmegaConf.merge(stage, {"auto_sample": n})
                with stopwatch() as t_all:
                    baseline_k, _ = choose_k(x, unsampled)
                t_base = t_all["s"]
            total = t_choose["s"] + t_rest["s"]
            rows.append(
                [f"{n:,}", k, t_choose["s"], t_rest["s"], total, stability["mean"], baseline_k, t_base or "–"]
            )
            del x
    report(
        f"cluster auto-k: auto_range {list(stage.auto_range)}, sample {stage.auto_sample:,}, "
        f"n_init={args.n_init}, {args.dim}-d, {args.k} planted looks, {args.threads} threads",
        [
            "embeddings",
            "k chosen",
            "choose k s",
            "final fit + stability s",
            "stage total s",
            "target stability",
            "k on all rows",
            "choose k on all rows s",
        ],
        rows,
        [],
        args,
    )


if __name__ == "__main__":
    main()
