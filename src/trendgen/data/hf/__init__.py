"""`data=hf`: any Hugging Face `datasets` dataset with an image and a text column (settings in `data.hf`).

`data.hf.path` is a hub id (`load_dataset(path, name)`), a `save_to_disk` folder (`load_from_disk`), a folder
of parquet files (grouped into splits by file or folder name: `train-0000.parquet`, `test/...`), or a parquet
file or glob (one train split). `data.hf.splits` maps trendgen's train / val / test to the dataset's split
names; a dataset without the val split gets one held out of train (`data.val_fraction` of its items, seeded).

Each row is one sample per caption (the text column holds a caption or a list of them). The item is
`data.hf.item_column` (every row its own item without one); categories come from `data.hf.category_column`
(a ClassLabel's names, or the sorted distinct texts). Images are decoded in the DataLoader workers: an
Image feature's bytes or file, raw bytes, or a path relative to `data.root`; a row whose image is missing or
does not decode is skipped and recorded like any bad image. A caption that is not text is refused with its
split and row.

`data.hf.streaming=true` streams the train split (an IterableDataset, sharded over ranks and workers and
shuffled in a buffer; `trainer.max_steps` sets the length) and takes the first `data.hf.eval_rows` rows of
the val and test splits into memory (a missing val split: the first rows of train, which the stream skips).
"""

from __future__ import annotations

from typing import Any

from trendgen.config import DataConfig
from trendgen.data.hf.mapped import build_mapped
from trendgen.data.hf.streamed import build_streamed

__all__ = ["build", "build_mapped", "build_streamed"]


def build(cfg: DataConfig, split: str) -> Any:
    """The split (train / val / test) of `data.hf`, map-style or (train, streaming) a stream."""
    return build_streamed(cfg, split) if cfg.hf.streaming else build_mapped(cfg, split)
