"""Quality bar: over six periods of real Fashion-MNIST photos, is a rising class labelled emerging, and is a
flat timeline left alone?

Rising: 6 periods of `--n` photos where one class rises from 4% to 34% and the other nine share the rest
evenly; the class's cluster (the cluster holding most of its photos in the last period) must be labelled
`emerging`. Flat: 10 timelines where every class keeps 10% in every period; at most one of the ten may name
any cluster emerging. Default trend settings (`trend.clusters=auto`, `trend.target=emerging`, labels at
`trend.fdr=0.05` over every growth test of the run, Benjamini-Hochberg), embed -> cluster.

    .venv/bin/python scripts/quality_trend_timeline.py --model /work/exp/fmnist_clip/model
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import REPO, compose
from fmnist_sets import PhotoDraw, class_counts, photo_class, test_photos

from trendgen.data.fashion_mnist import CLASSES
from trendgen.recipes.design import run_design

PERIODS = 6


def timeline(name: str, shares_per_period: list[dict[int, float]], seed: int, args, photos) -> dict:
    """Write one timeline's period folders, run embed -> cluster on it, return its trend record."""
    work = Path(args.workdir)
    folder = work / "sets" / name
    shutil.rmtree(folder, ignore_errors=True)
    draw = PhotoDraw(*photos, seed=seed)
    periods = [
        {"label": f"P{p + 1}", "images": str(draw.write(class_counts(args.n, shares), folder / f"P{p + 1}"))}
        for p, shares in enumerate(shares_per_period)
    ]
    overrides = [
        f"paths.output_dir={work / 'runs' / name}",
        f"paths.cache_dir={work / 'cache'}",
        f"model.name_or_path={args.model}",
        "trend.periods=" + json.dumps(periods).replace('"', ""),
        "trend.target=emerging",
        "generator=none",
        "design.stages=[embed,cluster]",
    ]
    return run_design(compose("design", overrides))


def class_cluster(trend: dict, planted: int) -> dict:
    """The cluster holding most of `planted`'s photos in the last period."""
    last: Counter[int] = Counter()
    index = json.loads(Path(trend["output_dir"], "embed", "index.json").read_text())
    labels = np.load(Path(trend["output_dir"], "cluster", "labels.npy"))
    final = index["periods"][-1]["label"]
    for path, period, label in zip(index["paths"], index["sets"], labels, strict=True):
        if period == final and photo_class(path) == planted:
            last[int(label)] += 1
    return trend["clusters"][last.most_common(1)[0][0]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trendgen CLIP folder (experiment=fashion_mnist)")
    parser.add_argument("--classes", default="0,2,4,6,8", help="the rising class of each rising timeline")
    parser.add_argument("--flat", type=int, default=10, help="flat timelines")
    parser.add_argument("--n", type=int, default=300, help="photos per period")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=str(REPO / ".cache" / "quality_timeline"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    photos = test_photos()
    rising_rows, flat_rows = [], []
    for planted in (int(c) for c in args.classes.split(",")):
        shares = [{planted: float(s)} for s in np.linspace(0.04, 0.34, PERIODS)]
        trend = timeline(
            f"rising-{CLASSES[planted].replace(' ', '_')}", shares, args.seed + planted, args, photos
        )
        found = class_cluster(trend, planted)
        g = found["growth"]
        rising_rows.append(
            {
                "class": CLASSES[planted],
                "k": trend["k"],
                "cluster": found["id"],
                "shares": found["shares"],
                "growth": g,
                "is_target": found["id"] == trend["target_cluster"],
                "right": g["label"] == "emerging",
            }
        )
    for seed in range(args.flat):
        trend = timeline(f"flat-{seed}", [{}] * PERIODS, args.seed + 1000 + seed, args, photos)
        emerging = [c["id"] for c in trend["clusters"] if c["growth"]["label"] == "emerging"]
        flat_rows.append(
            {"timeline": seed, "k": trend["k"], "emerging": emerging, "reason": trend["target_reason"]}
        )

    print(f"\n{'rising class':<14} {'k':>3} {'cluster':>7} {'shares':<42} growth (interval) q")
    for r in rising_rows:
        g, mark = r["growth"], "right" if r["right"] else "WRONG"
        shares = " ".join(f"{s:.2f}" for s in r["shares"])
        target = "target" if r["is_target"] else "not the target"
        print(
            f"{r['class']:<14} {r['k']:>3} {r['cluster']:>7} {shares:<42} {g['label']} {g['slope']:+.3f} "
            f"[{g['interval'][0]:+.3f}, {g['interval'][1]:+.3f}] q={g.get('q')} {target} {mark}"
        )
    quiet = sum(not r["emerging"] for r in flat_rows)
    for r in flat_rows:
        print(f"flat timeline {r['timeline']}: k={r['k']}, emerging: {r['emerging'] or 'none'}")
    right = sum(r["right"] for r in rising_rows)
    print(f"\nrising class labelled emerging in {right} of {len(rising_rows)} timelines")
    print(f"flat timelines with nothing emerging: {quiet} of {len(flat_rows)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rising": rising_rows, "flat": flat_rows}, indent=1))


if __name__ == "__main__":
    main()
