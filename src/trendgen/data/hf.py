"""Any Hugging Face `datasets` dataset with an image and a text column (`data=hf`, settings in `data.hf`).

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

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from trendgen.config import DataConfig
from trendgen.data.base import CaptionDataset
from trendgen.data.images import DEFAULT_MAX_PIXELS, load_rgb, load_rgb_bytes
from trendgen.errors import TrendgenError, first_line

_OPENED: dict[tuple, dict[str, Any]] = {}


def open_splits(cfg: DataConfig, streaming: bool) -> dict[str, Any]:
    """The dataset's splits (Dataset, or IterableDataset when streaming), opened once per process."""
    import datasets

    hf = cfg.hf
    if not hf.path:
        raise TrendgenError("data.hf.path is not set: a hub id, a save_to_disk folder or parquet files")
    key = (hf.path, hf.name, hf.revision, streaming, tuple(hf.splits.values()))
    if key in _OPENED:
        return _OPENED[key]
    local = Path(str(hf.path)).expanduser()
    cache = {"cache_dir": hf.cache_dir} if hf.cache_dir else {}
    try:
        if local.is_dir() and any((local / f).is_file() for f in ("dataset_dict.json", "state.json")):
            loaded = datasets.load_from_disk(str(local))
            if streaming:
                loaded = {s: d.to_iterable_dataset() for s, d in _as_dict(loaded).items()}
        elif local.is_dir() or str(hf.path).endswith(".parquet"):
            files = _parquet_files(local, str(hf.path), list(hf.splits.values()))
            loaded = datasets.load_dataset("parquet", data_files=files, streaming=streaming, **cache)
        else:
            loaded = datasets.load_dataset(
                str(hf.path), hf.name, revision=hf.revision, streaming=streaming, **cache
            )
    except (OSError, ValueError, FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as err:
        raise TrendgenError(f"could not open the dataset {hf.path!r}: {first_line(err)}") from err
    _OPENED.clear()
    _OPENED[key] = _as_dict(loaded)
    return _OPENED[key]


def _as_dict(loaded: Any) -> dict[str, Any]:
    return dict(loaded.items()) if hasattr(loaded, "keys") else {"train": loaded}


def _parquet_files(local: Path, pattern: str, split_names: list[str]) -> dict[str, list[str]]:
    """Parquet files by split: a file or glob is all train; a folder's files by file or folder name."""
    if not local.is_dir():
        from glob import glob

        matched = sorted(glob(str(Path(pattern).expanduser())))
        if not matched:
            raise TrendgenError(f"no parquet file matches data.hf.path={pattern!r}")
        return {"train": matched}
    found = sorted(str(p) for p in local.rglob("*.parquet"))
    if not found:
        raise TrendgenError(f"{local} holds neither a save_to_disk dataset nor parquet files")
    by_split: dict[str, list[str]] = {}
    for name in split_names:
        mine = [
            f
            for f in found
            if Path(f).name.startswith(f"{name}-") or name in Path(f).relative_to(local).parts[:-1]
        ]
        if mine:
            by_split[name] = mine
    return by_split or {"train": found}


# ---- images


def decode_image(value: Any, root: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS):
    """An image cell (Image feature dict, bytes, path, PIL image) as `(rgb, None)` or `(None, reason)`."""
    if value is None:
        return None, "no image in this row"
    if isinstance(value, Image.Image):
        from trendgen.data.images import to_rgb

        return to_rgb(value), None
    if isinstance(value, dict):
        if value.get("bytes"):
            return load_rgb_bytes(value["bytes"], max_pixels)
        value = value.get("path")
        if not value:
            return None, "no image in this row"
    if isinstance(value, bytes | bytearray):
        return load_rgb_bytes(bytes(value), max_pixels)
    path = Path(str(value))
    if root and not path.is_absolute():
        path = Path(root).expanduser() / path
    return load_rgb(path, max_pixels)


class RowImages:
    """Loads the image of a dataset row (picklable: a memory-mapped Dataset pickles by its files)."""

    def __init__(self, table: Any, column: str, root: str | None) -> None:
        self.table = table
        self.column = column
        self.root = root

    def __call__(self, row: int):
        return decode_image(self.table[int(row)][self.column], self.root)


def _raw_images(dataset: Any, column: str) -> Any:
    """The image column alone, undecoded (bytes and paths), so the workers decode (and can skip) them."""
    import datasets

    if isinstance(dataset.features.get(column), datasets.Image):
        dataset = dataset.cast_column(column, datasets.Image(decode=False))
    return dataset.select_columns([column])


# ---- rows, captions, items, categories


class HfCaptionDataset(CaptionDataset):
    """A CaptionDataset whose sources are row numbers; skip records name the dataset, split and row."""

    def __init__(self, *, where: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.where = where

    def describe(self, i: int) -> str:
        return f"{self.where} row {self.sources[i]}"


def _captions(value: Any, where: str, row: int, column: str) -> list[str]:
    texts = value if isinstance(value, list) else [value]
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise TrendgenError(
            f"{where} row {row}: {column!r} must be a caption or a list of captions, not {value!r:.60}"
        )
    return [" ".join(t.split()) for t in texts]


def column_values(dataset: Any, column: str) -> list[Any]:
    """One column as a Python list, read from Arrow in one pass (no per-row access)."""
    return dataset.select_columns([column]).to_dict()[column]


def _check_columns(features: Any, hf: Any, where: str) -> None:
    if features is None:
        return
    wanted = {"image_column": hf.image_column, "text_column": hf.text_column}
    wanted |= {k: hf[k] for k in ("item_column", "category_column") if hf[k]}
    for key, column in wanted.items():
        if column not in features:
            raise TrendgenError(
                f"{where} has no column {column!r} (data.hf.{key}); it has {', '.join(features)}"
            )


def _categories(cfg: DataConfig, splits: dict[str, Any], eval_rows: list[dict]) -> list[str]:
    """Category names: a ClassLabel's, else the sorted texts of all splits (streaming: the eval rows)."""
    import datasets

    column = cfg.hf.category_column
    if not column:
        return []
    feature = next(iter(splits.values())).features
    if feature is not None and isinstance(feature.get(column), datasets.ClassLabel):
        return list(feature[column].names)
    if cfg.hf.streaming:
        values = {row[column] for row in eval_rows}
    else:
        values = {v for d in splits.values() for v in column_values(d, column)}
    return sorted(str(v) for v in values if v is not None)


def _category_id(value: Any, categories: list[str]) -> int:
    if value is None or not categories:
        return -1
    if isinstance(value, int):
        return value
    return categories.index(str(value)) if str(value) in categories else -1


def _split_name(cfg: DataConfig, split: str) -> str:
    if split not in ("train", "val", "test"):
        raise TrendgenError(f"data=hf has splits train, val and test, not {split!r}")
    return str(cfg.hf.splits.get(split, split))


def _held_out_val(cfg: DataConfig, splits: dict[str, Any]) -> bool:
    return _split_name(cfg, "val") not in splits and _split_name(cfg, "train") in splits


def _lookup(splits: dict[str, Any], name: str, split: str, path: str) -> Any:
    if name not in splits:
        raise TrendgenError(
            f"dataset {path!r} has no split {name!r} (data.hf.splits.{split}); it has {', '.join(splits)}"
        )
    return splits[name]


def build(cfg: DataConfig, split: str) -> Any:
    """The split (train / val / test) of `data.hf`, map-style or (train, streaming) a stream."""
    if cfg.hf.streaming:
        from trendgen.data.hf_stream import build_streamed

        return build_streamed(cfg, split)
    splits = open_splits(cfg, streaming=False)
    name = _split_name(cfg, split)
    held_out = split in ("train", "val") and _held_out_val(cfg, splits)
    source_name = _split_name(cfg, "train") if held_out else name
    dataset = _lookup(splits, source_name, split, str(cfg.hf.path))
    where = f"{cfg.hf.path}[{source_name}]"
    _check_columns(dataset.features, cfg.hf, where)
    hf = cfg.hf
    items_column = column_values(dataset, hf.item_column) if hf.item_column else None
    rows = list(range(len(dataset)))
    if held_out:
        rows = _hold_out(rows, items_column, cfg.val_fraction, cfg.seed, keep_val=split == "val")
    texts = column_values(dataset, hf.text_column)
    categories = _categories(cfg, splits, [])
    category_values = column_values(dataset, hf.category_column) if hf.category_column else None
    item_index: dict[str, int] = {}
    sources, captions, item_ids, category_ids = [], [], [], []
    for row in rows:
        for caption in _captions(texts[row], where, row, hf.text_column):
            sources.append(row)
            captions.append(caption)
            item = str(items_column[row]) if items_column is not None else f"row {row}"
            item_ids.append(item_index.setdefault(item, len(item_index)))
            value = category_values[row] if category_values is not None else None
            category_ids.append(_category_id(value, categories))
    return HfCaptionDataset(
        where=where,
        name="hf",
        split=split,
        sources=sources,
        captions=captions,
        item_ids=item_ids,
        category_ids=category_ids,
        categories=categories,
        category_template=cfg.category_template,
        load=RowImages(_raw_images(dataset, hf.image_column), hf.image_column, cfg.root),
    )


def _hold_out(rows: list[int], items: Any, fraction: float, seed: int, keep_val: bool) -> list[int]:
    """Train's rows less (or, `keep_val`, only) a seeded `fraction` of its items."""
    if not 0.0 < fraction < 1.0:
        raise TrendgenError(f"data.val_fraction={fraction}: the dataset has no val split, so hold out (0, 1)")
    keys = [str(items[r]) if items is not None else str(r) for r in rows]
    distinct = sorted(set(keys))
    n_val = max(1, round(len(distinct) * fraction))
    chosen = set(np.random.default_rng(seed).permutation(distinct)[:n_val].tolist())
    return [r for r, k in zip(rows, keys, strict=True) if (k in chosen) == keep_val]
