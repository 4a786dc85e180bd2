"""Multi-field training against single-caption training, and the sigmoid against the softmax loss, on the
synthetic garments' facets (issue 22's bars).

From one starting CLIP (the `model/` of `trendgen-train experiment=fashion_mnist`), fine-tunes on the
synthetic garments with the forgetting page's `full_replay25_600` recipe (every weight, lr 5e-4, 600 steps,
25% Fashion-MNIST replay), once with the caption alone and once with `data.fields={garment,color,pattern}`
(each term weight 1), for each seed; then scores both with `trendgen-eval` on the synthetic test split (the
facet ranking tasks: each garment, colour and pattern word ranks the 400 test images) and the Fashion-MNIST
test split (zero-shot accuracy kept of the start's).

    python scripts/quality_multi_field.py --start runs/fmnist/model --out runs/multi_field
    python scripts/quality_multi_field.py --start runs/fmnist/model --out runs/losses --experiment losses

`--experiment losses` trains the tiny CLIP from scratch on the synthetic garments (600 steps, lr 5e-4) with
`model.loss=clip` and `model.loss=siglip`, and compares the facets' mean average precision: every garment
carries two details, a colour and a pattern, so each test image is relevant to two of the queries.

Two trainings run at once, one thread each. A run or score already on disk is reused. OUT/table.md holds
the per-seed and mean table, OUT/table.json its figures.
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from forgetting import RECIPES, score, train

FACETS = ("garment", "color", "pattern")
FIELDS = "data.fields={garment:1.0,color:1.0,pattern:1.0}"
EXPERIMENTS = {  # variant -> overrides on top of the experiment's recipe
    "fields": {"caption": [], "fields": [FIELDS]},
    "losses": {"clip": ["model.loss=clip"], "siglip": ["model.loss=siglip"]},
}
RECIPE = "full_replay25_600"
SCRATCH = ["model.pretrained=false", "model.optimizer.lr=5e-4"]  # `losses`: the tiny geometry from scratch


def figures(scores: dict[str, Any]) -> dict[str, float]:
    tasks = scores["synthetic"]["tasks"]
    out = {"fashion_mnist_zero_shot": scores["fashion_mnist"]["zero_shot_accuracy"]}
    for facet in FACETS:
        for metric in ("precision@1", "mrr", "map"):
            out[f"{facet} {metric}"] = tasks[f"facet_{facet}"][metric]
    out["t2i R@10"] = scores["synthetic"]["text_to_image_recall@10"]
    return out


def markdown(rows: list[dict[str, Any]], start_fm: float) -> str:
    keys = [f"{f} {m}" for f in FACETS for m in ("precision@1", "mrr", "map")]
    names = {"precision@1": "P@1", "mrr": "MRR", "map": "mAP"}
    head = "| run | " + " | ".join(f"{k.split()[0]} {names[k.split()[1]]}" for k in keys)
    head += " | t2i R@10 | Fashion-MNIST zero-shot (kept) |\n|" + "---|" * (len(keys) + 3) + "\n"
    lines = []
    for r in rows:
        cells = " | ".join(f"{r[k]:.3f}" for k in keys)
        fm = r["fashion_mnist_zero_shot"]
        lines.append(f"| {r['run']} | {cells} | {r['t2i R@10']:.3f} | {fm:.3f} ({fm / start_fm:.1%}) |")
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=Path, required=True, help="the starting model/ folder")
    parser.add_argument("--out", type=Path, default=Path("runs/multi_field"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 1])
    parser.add_argument("--experiment", choices=list(EXPERIMENTS), default="fields")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    start, out = args.start.resolve(), args.out.resolve()
    base = RECIPES[RECIPE][0] if args.experiment == "fields" else SCRATCH
    variants = EXPERIMENTS[args.experiment]
    runs = {
        f"{variant}_seed{seed}": [*base, f"seed={seed}", *extra]
        for seed in args.seeds
        for variant, extra in variants.items()
    }
    with ThreadPoolExecutor(2) as pool:
        models = dict(zip(runs, pool.map(lambda n: train(n, runs[n], start, out, 600), runs), strict=True))
    start_fm = score(start, start, None, out / "eval" / "start", "test")["fashion_mnist"][
        "zero_shot_accuracy"
    ]
    rows = [
        {"run": name, **figures(score(m, start, None, out / "eval" / name, "test"))}
        for name, m in models.items()
    ]
    for variant in variants:
        mine = [r for r in rows if r["run"].startswith(variant)]
        rows.append(
            {
                "run": f"{variant}, mean of {len(mine)}",
                **{k: sum(r[k] for r in mine) / len(mine) for k in mine[0] if k != "run"},
            }
        )
    (out / "table.json").write_text(
        json.dumps({"start_fashion_mnist": start_fm, "rows": rows}, indent=2) + "\n"
    )
    (out / "table.md").write_text(markdown(rows, start_fm))
    print(markdown(rows, start_fm))


if __name__ == "__main__":
    main()
