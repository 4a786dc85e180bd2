"""Quality bar: does the default trend pipeline name a planted Fashion-MNIST class?

Each set holds `--n` real Fashion-MNIST test photos: `--share` of them one planted class, the rest spread
evenly over the other nine. `trendgen-design` runs with its default trend settings (`trend.clusters=auto`)
and a one-facet bank of the ten class names (`garment:` only, with the default look template), embed ->
cluster -> describe; a set counts as right when the top caption (the named look) names the planted class.
Beside it, the cluster view: the look nearest the target cluster's centroid alone (what named the trend
before the photo view did; `trendgen.design.naming`), scored the same way.

    .venv/bin/python scripts/quality_trend_planted.py --model /work/exp/fmnist_clip/model
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import REPO, compose
from fmnist_sets import PhotoDraw, class_counts, test_photos

from trendgen.data.fashion_mnist import CLASSES
from trendgen.recipes.design import run_design


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trendgen CLIP folder (experiment=fashion_mnist)")
    parser.add_argument("--classes", default="0,2,4,6,8", help="planted classes (indices into CLASSES)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--share", type=float, default=0.3)
    parser.add_argument("--workdir", default=str(REPO / ".cache" / "quality_trend"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    work = Path(args.workdir)
    bank = work / "fmnist_classes.yaml"
    work.mkdir(parents=True, exist_ok=True)
    bank.write_text("garment:\n" + "".join(f"  - {name}\n" for name in CLASSES))
    photos = test_photos()
    rows = []
    for planted in (int(c) for c in args.classes.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            name = f"{CLASSES[planted].replace(' ', '_')}-seed{seed}"
            looks = work / "sets" / name
            if not looks.exists():  # round(share * n) of the planted class, the rest evenly over the others
                PhotoDraw(*photos, seed=seed).write(class_counts(args.n, {planted: args.share}), looks)
            overrides = [
                f"paths.output_dir={work / 'runs' / name}",
                f"paths.cache_dir={work / 'cache'}",
                f"model.name_or_path={args.model}",
                f"trend.images={looks}",
                f"captions.bank={bank}",
                "generator=none",
                "design.stages=[embed,cluster,describe]",
            ]
            trend = run_design(compose("design", overrides))
            target = trend["clusters"][trend["target_cluster"]]
            top = trend["captions"][0]["text"]
            cluster_look = ((trend.get("cluster_view") or {}).get("look") or {}).get("text", top)
            names = (CLASSES[planted], f"a {CLASSES[planted]}")  # "shirt" is not "t-shirt"
            rows.append(
                {
                    "set": name,
                    "k": trend["k"],
                    "target_share": target["share"],
                    "top_caption": top,
                    "right": top in names,
                    "cluster_view": cluster_look,
                    "cluster_view_right": cluster_look in names,
                }
            )
    right = sum(r["right"] for r in rows)
    by_cluster = sum(r["cluster_view_right"] for r in rows)
    print(f"\n{'set':<22} {'k':>3} {'share':>6}  {'top caption':<22} cluster view")
    for r in rows:
        mark = "right" if r["right"] else "WRONG"
        head = f"{r['set']:<22} {r['k']:>3} {r['target_share']:>6.3f}"
        print(f"{head}  {r['top_caption']:<16} {mark:<5} {r['cluster_view']}")
    print(f"\nplanted class named in {right} of {len(rows)} sets (the cluster view alone: {by_cluster})")
    if args.json:
        record = {"right": right, "cluster_view_right": by_cluster, "sets": rows}
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
