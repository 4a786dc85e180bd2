"""The Hugging Face side of `data=hf`, shared by the mapped and the streamed splits: opening the dataset's
splits, its columns, captions, categories and images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def raw_images(dataset: Any, column: str) -> Any:
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


def row_captions(value: Any, where: str, row: int, column: str) -> list[str]:
    texts = value if isinstance(value, list) else [value]
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise TrendgenError(
            f"{where} row {row}: {column!r} must be a caption or a list of captions, not {value!r:.60}"
        )
    return [" ".join(t.split()) for t in texts]


def column_values(dataset: Any, column: str) -> list[Any]:
    """One column as a Python list, read from Arrow in one pass (no per-row access)."""
    return dataset.select_columns([column]).to_dict()[column]


def check_columns(features: Any, hf: Any, where: str) -> None:
    if features is None:
        return
    wanted = {"image_column": hf.image_column, "text_column": hf.text_column}
    wanted |= {k: hf[k] for k in ("item_column", "category_column") if hf[k]}
    for key, column in wanted.items():
        if column not in features:
            raise TrendgenError(
                f"{where} has no column {column!r} (data.hf.{key}); it has {', '.join(features)}"
            )


def category_names(cfg: DataConfig, splits: dict[str, Any], eval_rows: list[dict]) -> list[str]:
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


def category_id(value: Any, categories: list[str]) -> int:
    if value is None or not categories:
        return -1
    if isinstance(value, int):
        return value
    return categories.index(str(value)) if str(value) in categories else -1


def split_name(cfg: DataConfig, split: str) -> str:
    if split not in ("train", "val", "test"):
        raise TrendgenError(f"data=hf has splits train, val and test, not {split!r}")
    return str(cfg.hf.splits.get(split, split))


def held_out_val(cfg: DataConfig, splits: dict[str, Any]) -> bool:
    return split_name(cfg, "val") not in splits and split_name(cfg, "train") in splits


def split_of(splits: dict[str, Any], name: str, split: str, path: str) -> Any:
    if name not in splits:
        raise TrendgenError(
            f"dataset {path!r} has no split {name!r} (data.hf.splits.{split}); it has {', '.join(splits)}"
        )
    return splits[name]
