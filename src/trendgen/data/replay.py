"""Replay (rehearsal) against forgetting: a seeded subset of another dataset's train split, such as the one
the starting model learnt from, mixed into the training split (`conf/replay/`).

With `replay.share` s, the training split is the `data=...` train split (n rows) plus
n_replay = round(n * s / (1 - s)) rows of `replay.data`'s train split (at most all of them), drawn once from
`replay.data.seed`, so replayed rows are s of each epoch's samples. Validation, test, the zero-shot categories
and their prompts stay those of `data=...`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset

from trendgen.data.base import CaptionDataset, ConcatCaptionDataset
from trendgen.data.registry import build_dataset
from trendgen.errors import TrendgenError

log = logging.getLogger(__name__)


def replay_enabled(cfg: Any) -> bool:
    """Whether `cfg` (the `replay` node, or None) mixes rows in; a bad setting raises TrendgenError."""
    if cfg is None:
        return False
    share = float(cfg.share)
    if not 0.0 <= share < 1.0:
        raise TrendgenError(
            f"replay.share={share} must be in [0, 1): the share of each epoch's training samples replayed"
        )
    if share > 0.0 and cfg.data is None:
        raise TrendgenError(f"replay.share={share} needs a replayed dataset, e.g. replay=fashion_mnist")
    return share > 0.0 and cfg.data is not None


def replay_rows(n_main: int, share: float, available: int) -> int:
    """Replayed rows for `n_main` rows of the main split: `share` of the total, capped at `available`."""
    return min(round(n_main * share / (1.0 - share)), available)


def mix_replay(main: CaptionDataset | Any, cfg: Any) -> ConcatCaptionDataset:
    """`main` (the training split) followed by a seeded random subset of `cfg.data`'s train split."""
    if isinstance(main, IterableDataset):
        raise TrendgenError(
            "replay is not supported with a streamed training split (data.hf.streaming=true): "
            "use replay=none or a non-streaming dataset"
        )
    data = cfg.data
    try:
        pool = build_dataset(data, data.train_split)
    except TrendgenError as err:
        raise TrendgenError(f"replay.data: {err}") from None
    if isinstance(pool, IterableDataset):
        raise TrendgenError("replay.data: a streamed dataset cannot be replayed (replay.data.hf.streaming)")
    n = replay_rows(len(main), float(cfg.share), len(pool))
    rng = np.random.default_rng([data.seed, 1])  # not data.limit's stream (default_rng(seed))
    keep = np.sort(rng.choice(len(pool), size=n, replace=False))
    mixed = ConcatCaptionDataset([main, pool], rows=[None, keep.tolist()])
    log.info(
        "replay: %d rows of %s/%s (of %d) mixed into the %d training rows of %s: %.1f%% of each epoch",
        n, pool.name, pool.split, len(pool), len(main), main.name, 100.0 * n / len(mixed),
    )  # fmt: skip
    return mixed
