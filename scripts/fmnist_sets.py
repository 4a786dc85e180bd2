"""Trend sets of real Fashion-MNIST test photos with known class counts, for the quality scripts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from trendgen.data.fashion_mnist import CLASSES, DEBIAN_ROOT, read_idx_pair


def test_photos() -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of the Fashion-MNIST test split (the CLIP under test trained on the train split)."""
    return read_idx_pair(Path(DEBIAN_ROOT), "test")


def class_counts(n: int, shares: dict[int, float]) -> dict[int, int]:
    """`n` photos: round(share * n) of each class in `shares`, the rest evenly over the other classes."""
    counts = {c: round(s * n) for c, s in shares.items()}
    others = [c for c in range(len(CLASSES)) if c not in shares]
    left = n - sum(counts.values())
    counts |= {c: left // len(others) for c in others}
    for c in others[: left % len(others)]:
        counts[c] += 1
    return counts


class PhotoDraw:
    """Draws photos of each class without replacement: no photo appears twice across the sets of a draw."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.images = images
        self.pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in range(len(CLASSES))}

    def write(self, counts: dict[int, int], folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for c, count in counts.items():
            for i in (self.pools[c].pop() for _ in range(count)):
                Image.fromarray(self.images[i]).convert("RGB").save(folder / f"{c}_{i}.png")
        return folder


def photo_class(path: str | Path) -> int:
    """The class of a photo these sets wrote (its name starts with the class index)."""
    return int(Path(path).name.split("_")[0])
