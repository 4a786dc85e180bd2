"""`CaptionDataset`, the shape every trendgen dataset takes, and `build_dataset`, which picks one by name.

All metadata (captions, item ids, category ids) is known without decoding a single image, so the caption table
can be tokenized once and evaluation can group by item and category; images are decoded only in
`__getitem__`, which runs in DataLoader workers.
"""

from __future__ import annotations

import copy
import functools
import importlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset, IterableDataset

from trendgen.config import DataConfig
from trendgen.data.images import DEFAULT_MAX_PIXELS, load_rgb
from trendgen.errors import TrendgenError

Loader = Callable[[Any], tuple[Image.Image | None, str | None]]


DATASETS = {
    "synthetic": "trendgen.data.synthetic",
    "deepfashion": "trendgen.data.deepfashion",
    "fashion_mnist": "trendgen.data.fashion_mnist",
    "folder": "trendgen.data.folder",
    "deepfashion_inshop": "trendgen.data.deepfashion_inshop",
    "hf": "trendgen.data.hf",
}
"""Dataset name (`data.name`) -> module whose `build(cfg, split)` makes it."""


class CaptionDataset(Dataset):
    """Captioned images: one row per (image, caption) sample.

    `sources[i]` is whatever `load` needs to produce image i (a path, an array index, a drawing spec).
    `skipped` lists `(describe, reason)` for rows dropped while the index was read (e.g. missing files);
    images that fail to decode are reported later, per batch, by the DataLoader's collate. `is_query` (image
    retrieval benchmarks such as DeepFashion In-shop) flags the query images; the others are the gallery.
    """

    def __init__(
        self,
        *,
        name: str,
        split: str,
        sources: Sequence[Any],
        captions: Sequence[str],
        item_ids: Sequence[int],
        category_ids: Sequence[int],
        categories: Sequence[str],
        category_template: str,
        load: Loader,
        skipped: Sequence[tuple[str, str]] = (),
        is_query: Sequence[bool] | None = None,
    ) -> None:
        n = len(sources)
        if not len(captions) == len(item_ids) == len(category_ids) == n:
            raise ValueError("sources, captions, item_ids and category_ids must have one entry per sample")
        self.name = name
        self.split = split
        self.sources = list(sources)
        self.captions = list(captions)
        self.item_ids = [int(i) for i in item_ids]
        self.category_ids = [int(c) for c in category_ids]
        self.categories = list(categories)
        self.category_template = category_template
        self.skipped = list(skipped)
        self.is_query = None if is_query is None else [bool(q) for q in is_query]
        if self.is_query is not None and len(self.is_query) != n:
            raise ValueError("is_query must have one entry per sample")
        self._load = load

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, reason = self._load(self.sources[i])
        return {"image": image, "reason": reason, "index": i}

    def describe(self, i: int) -> str:
        """The sample's file path, or its dataset/split/index for in-memory datasets (for skip records)."""
        source = self.sources[i]
        if isinstance(source, str | Path):
            return str(source)
        return f"{self.name}/{self.split}/{i}"

    def category_prompts(self) -> list[str]:
        """One zero-shot prompt per category, index = category id."""
        return [self.category_template.format(category=name) for name in self.categories]

    def subset(self, indices: Sequence[int]) -> CaptionDataset:
        """A copy holding only the given rows, in the given order (metadata only; nothing is decoded)."""
        picked = copy.copy(self)
        picked.sources = [self.sources[i] for i in indices]
        picked.captions = [self.captions[i] for i in indices]
        picked.item_ids = [self.item_ids[i] for i in indices]
        picked.category_ids = [self.category_ids[i] for i in indices]
        if self.is_query is not None:
            picked.is_query = [self.is_query[i] for i in indices]
        return picked


def file_loader(max_pixels: int = DEFAULT_MAX_PIXELS) -> Loader:
    """A loader for datasets whose sources are image paths (picklable, for spawned workers)."""
    return functools.partial(load_rgb, max_pixels=max_pixels)


def render_caption(template: str, **fields: str) -> str:
    """Fill a caption template; an empty field leaves no double space behind."""
    try:
        text = template.format(**fields)
    except KeyError as err:
        raise TrendgenError(
            f"caption template {template!r} uses {{{err.args[0]}}}; available fields: {', '.join(fields)}"
        ) from None
    return re.sub(r"\s+", " ", text).strip()


def require_templates(cfg: DataConfig) -> list[str]:
    """The configured caption templates; an empty list is a configuration error for template datasets."""
    templates = list(cfg.templates)
    if not templates:
        raise TrendgenError(f"data.templates is empty: dataset {cfg.name!r} builds captions from templates")
    return templates


def build_dataset(cfg: DataConfig, split: str) -> CaptionDataset | Any:
    """The dataset `cfg.name` for `split` (train / val / test), capped at `cfg.limit` rows if set."""
    if cfg.name not in DATASETS:
        raise TrendgenError(f"unknown dataset data.name={cfg.name!r}; choose one of {', '.join(DATASETS)}")
    builder = importlib.import_module(DATASETS[cfg.name]).build
    dataset = builder(cfg, split)
    if isinstance(dataset, IterableDataset):  # a stream (data=hf streaming): no length, capped by the builder
        return dataset
    if cfg.limit is not None and 0 <= cfg.limit < len(dataset):
        rng = np.random.default_rng(cfg.seed)
        keep = np.sort(rng.choice(len(dataset), size=cfg.limit, replace=False))
        dataset = dataset.subset(keep.tolist())
    if len(dataset) == 0:
        skipped = dataset.skipped
        dropped = f" ({len(skipped)} rows skipped, e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise TrendgenError(f"dataset {cfg.name!r} has no samples in split {split!r}{dropped}")
    return dataset
