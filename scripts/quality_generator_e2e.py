"""The generator's end-to-end quality bar: does `trendgen-design` draw the planted Fashion-MNIST class?

For each planted class: a trend set of real Fashion-MNIST test photos in which that class is `--share` of the
images and the other nine share the rest evenly; a one-facet caption bank of the ten class captions
(`--bank phrases`: "a photo of a dress", the generator's caption form; `--bank words`: "dress"); then
`trendgen-design` at its defaults with the Fashion-MNIST CLIP, the template prompt writer and
`generator=trained`.
Its designs are judged by a classifier that is not trendgen's: scikit-learn logistic regression on the pixels
of Fashion-MNIST training images, brought to the generator's resolution the way it was trained.

    python scripts/quality_generator_e2e.py --clip runs/fashion_mnist/runs/latest/model \
        --generator runs/fashion_mnist_generator/runs/latest/generator
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from trendgen.data.fashion_mnist import CLASSES, DEBIAN_ROOT, read_idx_pair
from trendgen.generator.export import read_record
from trendgen.generator.pipeline import pixel_processor, to_pil

BIN = Path(sys.executable).parent


def as_pixels(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(im.convert("L"), dtype=np.float32).ravel() / 255 for im in images])


def outside_classifier(resolution: int, n: int, seed: int):
    """Logistic regression on Fashion-MNIST pixels at the generator's resolution, and its test accuracy."""
    from sklearn.linear_model import LogisticRegression

    processor = pixel_processor(resolution)

    def prepared(images: np.ndarray) -> np.ndarray:
        pil = [Image.fromarray(a).convert("RGB") for a in images]
        return as_pixels(to_pil(processor(images=pil, return_tensors="pt")["pixel_values"]))

    train_x, train_y = read_idx_pair(Path(DEBIAN_ROOT), "train")
    test_x, test_y = read_idx_pair(Path(DEBIAN_ROOT), "test")
    rows = np.random.default_rng(seed).permutation(len(train_y))[:n]
    model = LogisticRegression(max_iter=300).fit(prepared(train_x[rows]), train_y[rows])
    accuracy = float((model.predict(prepared(test_x[:2000])) == test_y[:2000]).mean())
    return model, accuracy


def write_trend_set(folder: Path, planted: int, share: float, n: int, seed: int) -> None:
    images, labels = read_idx_pair(Path(DEBIAN_ROOT), "test")
    rng = np.random.default_rng(seed)
    n_planted = round(n * share)
    others = [c for c in range(10) if c != planted]
    counts = {planted: n_planted, **{c: (n - n_planted) // 9 for c in others}}
    folder.mkdir(parents=True, exist_ok=True)
    for cls, count in counts.items():
        for k, row in enumerate(rng.choice(np.flatnonzero(labels == cls), size=count, replace=False)):
            Image.fromarray(images[row]).save(folder / f"{CLASSES[cls].replace(' ', '_')}-{k:03d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", required=True, help="the experiment=fashion_mnist model/ folder")
    parser.add_argument(
        "--generator", required=True, help="the experiment=fashion_mnist_generator generator/"
    )
    parser.add_argument("--classes", default="dress,sneaker,trouser")
    parser.add_argument("--share", type=float, default=0.3)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--designs", type=int, default=16)
    parser.add_argument("--workdir", default=".cache/quality_generator_e2e")
    parser.add_argument("--bank", choices=("phrases", "words"), default="phrases")
    parser.add_argument("--extra", nargs="*", default=[], help="more trendgen-design overrides")
    args = parser.parse_args()

    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    bank = work / f"fmnist_{args.bank}.yaml"
    phrasing = "a photo of a {}" if args.bank == "phrases" else "{}"
    bank.write_text(yaml.safe_dump({"garment": [phrasing.format(c) for c in CLASSES]}))
    resolution = int(read_record(args.generator)["resolution"])
    classifier, accuracy = outside_classifier(resolution, 20000, seed=0)
    print(f"outside classifier (logistic regression, {resolution}px): test accuracy {accuracy:.3f}")

    results = []
    for name in args.classes.split(","):
        planted = CLASSES.index(name)
        looks = work / f"trend-{name.replace(' ', '_')}"
        if not looks.exists():
            write_trend_set(looks, planted, args.share, args.images, seed=planted)
        out = work / f"design-{args.bank}-{name.replace(' ', '_')}"
        cmd = [
            str(BIN / "trendgen-design"),
            f"hydra.run.dir={out}",
            f"model.name_or_path={Path(args.clip).resolve()}",
            f"trend.images={looks}",
            f"captions.bank={bank}",
            "generator=trained",
            f"generator.name_or_path={Path(args.generator).resolve()}",
            f"generator.num_images={args.designs}",
            "design.reuse=false",
            *args.extra,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OPENAI_API_KEY": ""})
        if proc.returncode:
            sys.exit(proc.stderr[-3000:])
        trend = json.loads((out / "trend.json").read_text())
        designs = [Image.open(d["path"]) for d in trend["designs"]]
        predicted = classifier.predict(as_pixels(designs))
        share = float((predicted == planted).mean())
        results.append(
            {
                "planted": name,
                "top_caption": trend["captions"][0]["text"],
                "prompt": trend["prompt"]["text"],
                "generator_prompt": trend["prompt"]["generator_text"],
                "designs": len(designs),
                "planted_share_of_designs": share,
                "predicted": [CLASSES[p] for p in predicted],
            }
        )
        print(
            f"{name}: {share:.2f} of {len(designs)} designs are {name} "
            f"(top caption: {results[-1]['top_caption']}; the generator was given: "
            f"{results[-1]['generator_prompt']})"
        )
    mean = float(np.mean([r["planted_share_of_designs"] for r in results]))
    print(f"mean share of designs of the planted class: {mean:.3f} (bar: 0.90)")
    (work / f"result-{args.bank}.json").write_text(
        json.dumps({"classifier_accuracy": accuracy, "mean": mean, "runs": results}, indent=1)
    )


if __name__ == "__main__":
    main()
