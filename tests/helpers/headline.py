"""The headline end to end, small: a tiny CLIP and a tiny pixel generator trained on three Fashion-MNIST
classes, trend sets with one class planted, caption banks, and a judge that is not trendgen's CLIP."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from trendgen.data.fashion_mnist import read_idx_pair

CLASSES = ("trouser", "dress", "sneaker")  # three shapes a 16 px generator tells apart in a few hundred steps
FMNIST_LABELS = {"trouser": 1, "dress": 3, "sneaker": 7}
PHRASE = "a photo of a {}"  # the Fashion-MNIST generator's caption form


def class_rows(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        name: rng.choice(np.flatnonzero(labels == FMNIST_LABELS[name]), size=per_class, replace=False)
        for name in CLASSES
    }


def write_training_folder(folder: Path, root: Path, per_class: int, seed: int = 0) -> Path:
    """Training images of the three classes (Fashion-MNIST train file) with `data=folder`'s captions.csv."""
    images, labels = read_idx_pair(root, "train")
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "captions.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "caption", "category"])
        for name, rows in class_rows(labels, per_class, np.random.default_rng(seed)).items():
            for row in rows:
                path = f"{name}-{row}.png"
                Image.fromarray(images[row]).save(folder / path)
                writer.writerow([path, PHRASE.format(name), name])
    return folder


def write_trend_set(folder: Path, root: Path, planted: str, n: int, share: float, seed: int) -> Path:
    """`n` Fashion-MNIST test photos of the three classes, `planted` at `share`, the others evenly."""
    images, labels = read_idx_pair(root, "test")
    rng = np.random.default_rng(seed)
    counts = {c: round(n * share) if c == planted else round(n * (1 - share) / 2) for c in CLASSES}
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in counts.items():
        rows = rng.choice(np.flatnonzero(labels == FMNIST_LABELS[name]), size=count, replace=False)
        for row in rows:
            Image.fromarray(images[row]).save(folder / f"{name}-{row}.png")
    return folder


def write_banks(folder: Path) -> dict[str, Path]:
    """A one-facet bank of phrases in the generator's caption form, and one of bare words."""
    folder.mkdir(parents=True, exist_ok=True)
    banks = {
        "phrases": {"garment": [PHRASE.format(c) for c in CLASSES]},
        "words": {"garment": list(CLASSES)},
    }
    paths = {}
    for name, bank in banks.items():
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(bank))
    return paths


@dataclass
class PixelJudge:
    """Logistic regression on the pixels of Fashion-MNIST training images at the generator's resolution."""

    model: object
    resolution: int

    def classes(self, images: list[Image.Image]) -> list[str]:
        return [CLASSES[i] for i in self.model.predict(self.pixels(images))]

    def pixels(self, images: list[Image.Image]) -> np.ndarray:
        size = (self.resolution, self.resolution)
        return np.stack(
            [
                np.asarray(im.convert("L").resize(size, Image.BICUBIC), np.float32).ravel() / 255
                for im in images
            ]
        )


def pixel_judge(root: Path, resolution: int, per_class: int = 600, seed: int = 1) -> PixelJudge:
    from sklearn.linear_model import LogisticRegression

    images, labels = read_idx_pair(root, "train")
    judge = PixelJudge(None, resolution)
    rows = class_rows(labels, per_class, np.random.default_rng(seed))
    x = judge.pixels([Image.fromarray(images[r]) for name in CLASSES for r in rows[name]])
    y = np.repeat(np.arange(len(CLASSES)), per_class)
    judge.model = LogisticRegression(max_iter=500).fit(x, y)
    return judge
