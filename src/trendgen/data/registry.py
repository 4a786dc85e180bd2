"""The datasets `data.name` chooses, listed explicitly: name -> `build(cfg, split)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset

from trendgen.config import DataConfig
from trendgen.data import deepfashion, deepfashion_inshop, fashion_mnist, folder, hf, synthetic
from trendgen.data.base import CaptionDataset
from trendgen.errors import TrendgenError

DATASETS: dict[str, Callable[[DataConfig, str], Any]] = {
    "synthetic": synthetic.build,
    "deepfashion": deepfashion.build,
    "fashion_mnist": fashion_mnist.build,
    "folder": folder.build,
    "deepfashion_inshop": deepfashion_inshop.build,
    "hf": hf.build,
}


def build_dataset(cfg: DataConfig, split: str) -> CaptionDataset | Any:
    """The dataset `cfg.name` for `split` (train / val / test), capped at `cfg.limit` rows if set."""
    if cfg.name not in DATASETS:
        raise TrendgenError(f"unknown dataset data.name={cfg.name!r}; choose one of {', '.join(DATASETS)}")
    dataset = DATASETS[cfg.name](cfg, split)
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
