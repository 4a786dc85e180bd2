"""Synthetic garments: deterministic, every look drawn, captions that name it, a plantable trend."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trendgen.config import FolderDataConfig, SyntheticDataConfig
from trendgen.data import build_dataset
from trendgen.data.synthetic import COLORS, GARMENTS, PATTERNS, draw_garment, write_trend_folder
from trendgen.errors import TrendgenError

TEMPLATES = ["a {color} {pattern} {garment}", "a photo of a {color} {pattern} {garment}"]


def _cfg(**overrides) -> SyntheticDataConfig:
    base = {"name": "synthetic", "size": 300, "val_size": 40, "test_size": 30, "image_px": 32, "seed": 3}
    return SyntheticDataConfig(**{**base, "templates": list(TEMPLATES), **overrides})


def test_catalogue_sizes() -> None:
    assert len(GARMENTS) >= 8 and len(set(GARMENTS)) == len(GARMENTS)
    assert len(COLORS) == 10 and len(PATTERNS) == 5
    assert {"dress", "t-shirt", "trousers", "skirt", "coat", "jacket", "hoodie", "shorts"} <= set(GARMENTS)


def test_same_seed_same_data_other_seed_other_data() -> None:
    first, again = build_dataset(_cfg(), "train"), build_dataset(_cfg(), "train")
    assert first.captions == again.captions and first.category_ids == again.category_ids
    for i in (0, 7, 299):
        assert np.array_equal(np.asarray(first[i]["image"]), np.asarray(again[i]["image"]))
    other = build_dataset(_cfg(seed=4), "train")
    assert other.captions != first.captions
    assert not np.array_equal(np.asarray(first[0]["image"]), np.asarray(other[0]["image"]))


def test_splits_sizes_and_metadata() -> None:
    sizes = {split: len(build_dataset(_cfg(), split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 300, "val": 40, "test": 30}
    train, val = build_dataset(_cfg(), "train"), build_dataset(_cfg(), "val")
    assert train.captions[:40] != val.captions  # splits are different draws
    assert train.item_ids == list(range(300))
    assert train.categories == list(GARMENTS)
    assert train.category_prompts()[GARMENTS.index("dress")] == "a photo of a dress"
    sample = train[5]
    assert sample["index"] == 5 and sample["reason"] is None
    assert sample["image"].mode == "RGB" and sample["image"].size == (32, 32)
    with pytest.raises(TrendgenError, match="splits"):
        build_dataset(_cfg(), "holdout")


def test_captions_name_the_drawn_look_and_cover_everything() -> None:
    data = build_dataset(_cfg(size=1500), "train")
    seen_garments, seen_colors, seen_patterns, seen_templates = set(), set(), set(), set()
    for caption, category in zip(data.captions, data.category_ids, strict=True):
        garment = GARMENTS[category]
        assert caption.endswith(" " + garment)
        color = next(c for c in COLORS if f" {c} " in f" {caption} ")
        pattern = next(p for p in PATTERNS if f" {p} " in f" {caption} ")
        seen_garments.add(garment)
        seen_colors.add(color)
        seen_patterns.add(pattern)
        seen_templates.add(caption.startswith("a photo of"))
    assert seen_garments == set(GARMENTS)
    assert seen_colors == set(COLORS)
    assert seen_patterns == set(PATTERNS)
    assert seen_templates == {True, False}


def test_looks_are_visually_distinct() -> None:
    """Colour drives the mean colour, the silhouette drives the covered area, the pattern the texture."""
    rng = np.random.default_rng(0)
    red = np.asarray(draw_garment("dress", "red", "solid", rng, 64), dtype=float)
    blue = np.asarray(draw_garment("dress", "blue", "solid", rng, 64), dtype=float)
    assert red[..., 0].mean() > blue[..., 0].mean() and blue[..., 2].mean() > red[..., 2].mean()
    background = np.asarray(Image.new("RGB", (64, 64), (228, 228, 228)), dtype=float)
    areas = {}
    for garment in GARMENTS:
        image = np.asarray(draw_garment(garment, "black", "solid", np.random.default_rng(1), 64), dtype=float)
        areas[garment] = float((np.abs(image - background).sum(axis=2) > 150).mean())
    assert areas["trousers"] > areas["shorts"] > 0.05 and areas["coat"] > areas["jacket"]
    stripes = np.asarray(draw_garment("coat", "blue", "striped", np.random.default_rng(2), 64), dtype=float)
    solid = np.asarray(draw_garment("coat", "blue", "solid", np.random.default_rng(2), 64), dtype=float)

    def profile(image: np.ndarray) -> np.ndarray:  # brightness down a strip of the coat, below its belt
        return image[36:56, 24:28].mean(axis=(1, 2))

    assert profile(stripes).std() > 30 and profile(solid).std() < 5


def test_planted_share_is_exact() -> None:
    planted = {"garment": "dress", "color": "red", "pattern": "floral"}
    data = build_dataset(_cfg(size=400, planted_share=0.25, planted=planted), "train")
    hits = [c for c in data.captions if c.endswith("red floral dress")]
    assert len(hits) == 100
    partial = build_dataset(_cfg(size=400, planted_share=0.5, planted={"color": "yellow"}), "train")
    assert sum(" yellow " in c for c in partial.captions) >= 200
    with pytest.raises(TrendgenError, match="planted color 'teal'"):
        build_dataset(_cfg(planted_share=0.2, planted={"color": "teal"}), "train")
    with pytest.raises(TrendgenError, match="needs a planted look"):
        build_dataset(_cfg(planted_share=0.2), "train")
    with pytest.raises(TrendgenError, match=r"must lie in \[0, 1\]"):
        build_dataset(_cfg(planted_share=1.5, planted=planted), "train")


def test_write_trend_folder(tmp_path: Path) -> None:
    planted = {"garment": "hoodie", "color": "green", "pattern": "striped"}
    paths = write_trend_folder(tmp_path / "trend", 40, planted, 0.3, seed=5, px=48)
    assert len(paths) == 40 and all(p.is_file() and p.suffix == ".png" for p in paths)
    assert Image.open(paths[0]).size == (48, 48)
    with (tmp_path / "trend" / "looks.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert Counter(r["planted"] for r in rows) == {"1": 12, "0": 28}
    assert all(r["caption"] == "a green striped hoodie" for r in rows if r["planted"] == "1")
    assert not any(r["caption"] == "a green striped hoodie" for r in rows if r["planted"] == "0")

    # The same call again keeps identical files; a different call never overwrites them.
    before = paths[3].read_bytes()
    assert write_trend_folder(tmp_path / "trend", 40, planted, 0.3, seed=5, px=48) == paths
    assert paths[3].read_bytes() == before
    with pytest.raises(TrendgenError, match="already exists"):
        write_trend_folder(tmp_path / "trend", 40, planted, 0.3, seed=6, px=48)
    assert paths[3].read_bytes() == before

    # The written folder is a valid `data=folder` dataset.
    index = str(tmp_path / "trend" / "looks.csv")
    folder = build_dataset(
        FolderDataConfig(name="folder", root=str(tmp_path / "trend"), index=index), "train"
    )
    assert len(folder) == 40 and folder.categories == sorted({r["category"] for r in rows})
