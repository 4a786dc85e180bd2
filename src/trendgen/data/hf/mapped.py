"""`data=hf` map-style: every split read into an index of rows (a missing val split held out of train)."""

from __future__ import annotations

from typing import Any

import numpy as np

from trendgen.config import DataConfig
from trendgen.data.base import CaptionRows
from trendgen.data.hf.source import (
    HfCaptionDataset,
    RowImages,
    category_id,
    category_names,
    check_columns,
    column_values,
    held_out_val,
    open_splits,
    raw_images,
    row_captions,
    split_name,
    split_of,
)
from trendgen.errors import TrendgenError


def build_mapped(cfg: DataConfig, split: str) -> HfCaptionDataset:
    """The split (train / val / test) of `data.hf` as a map-style dataset."""
    splits = open_splits(cfg, streaming=False)
    name = split_name(cfg, split)
    held_out = split in ("train", "val") and held_out_val(cfg, splits)
    source_name = split_name(cfg, "train") if held_out else name
    dataset = split_of(splits, source_name, split, str(cfg.hf.path))
    where = f"{cfg.hf.path}[{source_name}]"
    check_columns(dataset.features, cfg.hf, where)
    hf = cfg.hf
    items_column = column_values(dataset, hf.item_column) if hf.item_column else None
    rows = list(range(len(dataset)))
    if held_out:
        rows = hold_out(rows, items_column, cfg.val_fraction, cfg.seed, keep_val=split == "val")
    texts = column_values(dataset, hf.text_column)
    categories = category_names(cfg, splits, [])
    category_values = column_values(dataset, hf.category_column) if hf.category_column else None
    item_index: dict[str, int] = {}
    samples = CaptionRows()
    for row in rows:
        value = category_values[row] if category_values is not None else None
        for caption in row_captions(texts[row], where, row, hf.text_column):
            key = str(items_column[row]) if items_column is not None else f"row {row}"
            samples.add(
                row, caption, item_index.setdefault(key, len(item_index)), category_id(value, categories)
            )
    load = RowImages(raw_images(dataset, hf.image_column), hf.image_column, cfg.root)
    return samples.dataset(cfg, split, categories, load, HfCaptionDataset, where=where)


def hold_out(rows: list[int], items: Any, fraction: float, seed: int, keep_val: bool) -> list[int]:
    """Train's rows less (or, `keep_val`, only) a seeded `fraction` of its items."""
    if not 0.0 < fraction < 1.0:
        raise TrendgenError(f"data.val_fraction={fraction}: the dataset has no val split, so hold out (0, 1)")
    keys = [str(items[r]) if items is not None else str(r) for r in rows]
    distinct = sorted(set(keys))
    n_val = max(1, round(len(distinct) * fraction))
    chosen = set(np.random.default_rng(seed).permutation(distinct)[:n_val].tolist())
    return [r for r, k in zip(rows, keys, strict=True) if (k in chosen) == keep_val]
