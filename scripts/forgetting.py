"""The forgetting experiment of issue 11: what a fine-tuned CLIP learns against what it forgets.

Fine-tunes one starting CLIP (the `model/` of `trendgen-train experiment=fashion_mnist`) on the synthetic
garments with several recipes, then scores each recipe's weights, and its WiSE-FT interpolations with the
start, on the Fashion-MNIST test split (what it knew: zero-shot accuracy) and the synthetic test split (what
it learnt: zero-shot accuracy and text->image recall@10), and writes one table.

    OMP_NUM_THREADS=1 python scripts/forgetting.py --start runs/fmnist/model --out runs/forgetting
    python scripts/forgetting.py --start runs/fmnist/model --out runs/forgetting --runs full lora

Training runs `trendgen-train` (one process per recipe, stopped by `trainer.max_steps`, so the figures do
not depend on the machine's load); WiSE-FT is scored by `trendgen-eval`'s `eval.wise_ft.start/alpha`
(the same interpolation `model.wise_ft.alphas` exports). A run or score already on disk is reused, so the
script can be stopped and started again. OUT/table.md holds the table, OUT/table.json its figures
(`--split val`: the val splits, into OUT/eval_val/ and OUT/table_val.md, to check a choice made on test).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Each recipe: the trendgen-train overrides on top of COMMON, and the WiSE-FT alphas scored (1 = itself).
COMMON = ["data=synthetic", "model.pretrained=true", "data.num_workers=1", "callbacks.progress_bar=null"]
LORA = ["model/freeze=none", "model.lora.enabled=true"]
LORA_R4 = [*LORA, "model.lora.rank=4", "model.lora.alpha=8"]
ALPHAS = [0.5, 0.75, 0.9, 1.0]
REPLAY = ["replay=fashion_mnist"]  # rehearsal: Fashion-MNIST training rows mixed into each epoch
RECIPES: dict[str, tuple[list[str], list[float]]] = {
    "full": (["model.optimizer.lr=5e-4"], [0.25, *ALPHAS]),
    "original": (["model/freeze=original", "model.optimizer.lr=5e-4"], ALPHAS),
    "lora": ([*LORA, "model.optimizer.lr=2e-3"], ALPHAS),
    "full_lr1e-4": (["model.optimizer.lr=1e-4"], ALPHAS),
    "full_lr2e-4": (["model.optimizer.lr=2e-4"], ALPHAS),
    "lora_text": ([*LORA, "model.lora.towers=[text]", "model.optimizer.lr=2e-3"], ALPHAS),
    "lora_r4": ([*LORA_R4, "model.optimizer.lr=1e-3"], [0.5, 0.75, 0.8, 0.85, 0.9, 1.0]),
    "lora_r4_seed7": ([*LORA_R4, "model.optimizer.lr=1e-3", "seed=7"], [0.5, 0.75, 0.8, 0.85, 0.9, 1.0]),
    "lora_r4_lr5e-4": ([*LORA_R4, "model.optimizer.lr=5e-4"], ALPHAS),
    "full_replay50": (["model.optimizer.lr=5e-4", *REPLAY, "replay.share=0.5"], [0.75, 0.9, 1.0]),
    "full_replay25": (["model.optimizer.lr=5e-4", *REPLAY, "replay.share=0.25"], [0.75, 0.9, 1.0]),
    "full_replay25_seed7": (["model.optimizer.lr=5e-4", *REPLAY, "replay.share=0.25", "seed=7"], [0.9, 1.0]),
    "full_replay25_seed1": (["model.optimizer.lr=5e-4", *REPLAY, "replay.share=0.25", "seed=1"], [0.9, 1.0]),
    "full_replay10": (["model.optimizer.lr=5e-4", *REPLAY, "replay.share=0.1"], [0.75, 0.9, 1.0]),
    "full_replay25_600": (
        ["model.optimizer.lr=5e-4", *REPLAY, "replay.share=0.25", "trainer.max_steps=600"],
        [0.75, 0.9, 1.0],
    ),
    "full_replay10_seed7": (["model.optimizer.lr=5e-4", *REPLAY, "replay.share=0.1", "seed=7"], [0.9, 1.0]),
    "full_replay10_seed1": (["model.optimizer.lr=5e-4", *REPLAY, "replay.share=0.1", "seed=1"], [0.9, 1.0]),
    "full_600": (["model.optimizer.lr=5e-4", "trainer.max_steps=600"], [0.9, 1.0]),
    "full_replay25_600_seed7": (
        ["model.optimizer.lr=5e-4", *REPLAY, "replay.share=0.25", "trainer.max_steps=600", "seed=7"],
        [0.9, 1.0],
    ),
    "full_replay25_600_seed1": (
        ["model.optimizer.lr=5e-4", *REPLAY, "replay.share=0.25", "trainer.max_steps=600", "seed=1"],
        [0.9, 1.0],
    ),
    "lora_r4_replay25": (
        [*LORA_R4, "model.optimizer.lr=1e-3", *REPLAY, "replay.share=0.25"],
        [0.75, 0.9, 1.0],
    ),
}
REFERENCE = "full"  # the in-domain gain is counted against this recipe's own weights (alpha 1)
EVAL_SETS = {"fashion_mnist": ["data=fashion_mnist"], "synthetic": ["data=synthetic"]}
RETAIN, GAIN = 0.95, 0.90  # the goal: keep 95% of the start's Fashion-MNIST accuracy, reach 90% of the gain


def train(name: str, overrides: list[str], start: Path, out: Path, steps: int) -> Path:
    """Runs one recipe (unless its model/ exists); returns its fine-tuned weights' folder."""
    run_dir = out / name
    if not (run_dir / "model").is_dir():
        run_dir.mkdir(parents=True, exist_ok=True)
        args = [*COMMON, f"model.name_or_path={start}", f"trainer.max_steps={steps}", *overrides]
        command = [sys.executable, "-m", "trendgen.cli.train", *args, f"hydra.run.dir={run_dir}"]
        (run_dir / "command.txt").write_text(" ".join(command[1:]) + "\n")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TRENDGEN_ROOT": str(out)}
        began = time.perf_counter()
        with open(run_dir / "stdout.log", "w") as log:
            subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
        (run_dir / "train_seconds").write_text(f"{time.perf_counter() - began:.1f}\n")
    finetuned = run_dir / "wise_ft" / "alpha_1"  # where a run with model.wise_ft.alphas keeps them
    return finetuned if finetuned.is_dir() else run_dir / "model"


def trainable_params(run_dir: Path) -> str | None:
    """Lightning's 'Trainable params' line of the run's output, e.g. '69.1 K'."""
    found = re.search(r"Trainable params: ([\d.]+ ?\w?)", (run_dir / "stdout.log").read_text())
    return found.group(1).strip() if found else None


Scores = dict[str, dict[str, Any]]  # eval set -> its eval.json


def score(model: Path, start: Path, alpha: float | None, out_dir: Path, split: str) -> Scores:
    """trendgen-eval's scores of `model` (or its WiSE-FT mix with `start` at `alpha`) on each eval set."""
    from hydra import compose, initialize_config_dir

    from trendgen.config import CONF_DIR, register_configs
    from trendgen.recipes.evaluate import evaluate

    register_configs()

    scores = {}
    for data, data_overrides in EVAL_SETS.items():
        target = out_dir / data
        if not (target / "eval.json").is_file():
            overrides = [f"model.name_or_path={model}", *data_overrides, f"data.split={split}"]
            if alpha is not None:
                overrides += [f"eval.wise_ft.start={start}", f"eval.wise_ft.alpha={alpha}"]
            target.mkdir(parents=True, exist_ok=True)
            (target / "command.txt").write_text("trendgen-eval " + " ".join(overrides) + "\n")
            with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
                cfg = compose("eval", overrides=[*overrides, f"paths.output_dir={target}"])
            evaluate(cfg)
        scores[data] = json.loads((target / "eval.json").read_text())
    return scores


def row(label: str, scores: Scores, **extra: Any) -> dict[str, Any]:
    """The table's figures for one set of weights."""
    synthetic = scores["synthetic"]
    return {
        "weights": label,
        "fashion_mnist_zero_shot": scores["fashion_mnist"]["zero_shot_accuracy"],
        "synthetic_zero_shot": synthetic["zero_shot_accuracy"],
        "synthetic_t2i_R@10": synthetic["text_to_image_recall@10"],
        "synthetic_i2t_R@10": synthetic["image_to_text_recall@10"],
        **extra,
    }


def add_shares(rows: list[dict[str, Any]], start: dict[str, Any], reference: dict[str, Any]) -> None:
    """Adds the share of the start's Fashion-MNIST accuracy kept and of the reference's gain reached."""
    for r in rows:
        r["kept"] = r["fashion_mnist_zero_shot"] / start["fashion_mnist_zero_shot"]
        for key, share in (("synthetic_zero_shot", "gain_zero_shot"), ("synthetic_t2i_R@10", "gain_R@10")):
            r[share] = (r[key] - start[key]) / (reference[key] - start[key])
        r["goal"] = [
            metric
            for metric, share in (("zero-shot", "gain_zero_shot"), ("R@10", "gain_R@10"))
            if r["kept"] >= RETAIN and r[share] >= GAIN
        ]


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| weights | trains | train s | Fashion-MNIST zero-shot (kept) | synthetic zero-shot (gain) "
        "| synthetic t2i R@10 (gain) | i2t R@10 | goal met on |\n|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['weights']} | {r.get('trains') or '–'} | {r.get('train_s') or '–'} "
        f"| {r['fashion_mnist_zero_shot']:.3f} ({r['kept']:.1%}) "
        f"| {r['synthetic_zero_shot']:.3f} ({r['gain_zero_shot']:.0%}) "
        f"| {r['synthetic_t2i_R@10']:.3f} ({r['gain_R@10']:.0%}) | {r['synthetic_i2t_R@10']:.3f} "
        f"| {', '.join(r['goal']) or 'no'} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=Path, required=True, help="the starting model/ folder")
    parser.add_argument("--out", type=Path, default=Path("runs/forgetting"))
    parser.add_argument("--steps", type=int, default=300, help="trainer.max_steps of every recipe")
    parser.add_argument("--split", choices=["test", "val"], default="test", help="the split scored")
    parser.add_argument("--runs", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    start, out = args.start.resolve(), args.out.resolve()
    names = [REFERENCE, *(n for n in args.runs if n != REFERENCE)]  # the reference is always needed

    evals = out / ("eval" if args.split == "test" else f"eval_{args.split}")
    start_row = row("start", score(start, start, None, evals / "start", args.split))
    rows: list[dict[str, Any]] = []
    for name in names:
        overrides, alphas = RECIPES[name]
        finetuned = train(name, overrides, start, out, args.steps)
        run_dir = out / name
        seconds = f"{float((run_dir / 'train_seconds').read_text()):.0f}"
        extra = {"trains": trainable_params(run_dir), "train_s": seconds}
        for alpha in sorted(alphas, reverse=True):
            label = name if alpha == 1 else f"{name} + WiSE-FT α={alpha:g}"
            mix = None if alpha == 1 else alpha
            scores = score(finetuned, start, mix, evals / f"{name}_a{alpha:g}", args.split)
            rows.append(row(label, scores, recipe=name, alpha=alpha, **(extra if alpha == 1 else {})))
    reference = next(r for r in rows if r["recipe"] == REFERENCE and r["alpha"] == 1)
    add_shares([start_row, *rows], start_row, reference)
    table = "table" if args.split == "test" else f"table_{args.split}"
    (out / f"{table}.json").write_text(json.dumps([start_row, *rows], indent=2) + "\n")
    (out / f"{table}.md").write_text(markdown([start_row, *rows]))
    print(markdown([start_row, *rows]))


if __name__ == "__main__":
    main()
