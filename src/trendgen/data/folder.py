"""Any folder of images with an index: a CSV (header row) or JSONL file, one row per (image, caption).

Columns / keys: `path` (relative to `data.root`, or absolute) and `caption` are required; `item_id` (integer),
`category` (name) and `split` (train / val / test) are optional, but `item_id` and `category` must then be
given on every row. Without `item_id`, each distinct image path is one item; without `category`, the dataset
has no categories (no zero-shot prompts). Rows with an empty or absent `split` belong to every split.
A malformed index is refused with the file and line; rows whose image file is missing are skipped and listed
in `dataset.skipped`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trendgen.config import DataConfig
from trendgen.data.base import CaptionDataset, CaptionRows, file_loader
from trendgen.data.index_files import index_records
from trendgen.errors import TrendgenError

INDEX_NAMES = ("captions.csv", "captions.jsonl")


@dataclass
class IndexRow:
    line: int
    path: str
    caption: str
    item_id: int | None
    category: str | None
    split: str | None


def build(cfg: DataConfig, split: str) -> CaptionDataset:
    """The rows of `cfg.index` for `split`, images under `cfg.root`."""
    if not cfg.root:
        raise TrendgenError("data.root is not set: point it at the image folder")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise TrendgenError(f"image folder {root} does not exist")
    index = _index_path(root, cfg.index)
    rows = read_index(index)
    with_ids = _all_or_none(index, rows, "item_id")
    with_categories = _all_or_none(index, rows, "category")
    path_ids: dict[str, int] = {}
    for row in rows:
        path_ids.setdefault(row.path, len(path_ids))
    categories = sorted({row.category for row in rows if row.category}) if with_categories else []
    category_index = {name: i for i, name in enumerate(categories)}

    samples = CaptionRows()
    for row in rows:
        if row.split and row.split != split:
            continue
        image = Path(row.path) if Path(row.path).is_absolute() else root / row.path
        if not image.is_file():
            samples.skipped.append((str(image), f"missing file (listed on {index.name} line {row.line})"))
            continue
        item = row.item_id if with_ids and row.item_id is not None else path_ids[row.path]
        samples.add(image, row.caption, item, category_index[row.category] if row.category else -1)
    return samples.dataset(cfg, split, categories, file_loader())


def _index_path(root: Path, index: str | None) -> Path:
    if index:
        path = Path(index).expanduser()
        if not path.is_file():
            raise TrendgenError(f"caption index {path} does not exist (data.index)")
        return path
    for name in INDEX_NAMES:
        if (root / name).is_file():
            return root / name
    raise TrendgenError(f"no caption index: set data.index or put {' or '.join(INDEX_NAMES)} in {root}")


def read_index(path: Path) -> list[IndexRow]:
    """Rows of a CSV or JSONL index (chosen by the file suffix), validated; refuses an empty index."""
    records = index_records(path, ("path", "caption"), "caption index")
    rows = [_row(path, line, record) for line, record in records]
    if not rows:
        raise TrendgenError(f"caption index {path} has no rows")
    return rows


def _row(path: Path, line: int, record: dict[str, Any]) -> IndexRow:
    def text(key: str, required: bool) -> str | None:
        value = record.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise TrendgenError(f"{path}:{line}: empty or missing {key!r}")
            return None
        if not isinstance(value, str | int):
            raise TrendgenError(f"{path}:{line}: {key!r} must be text, not {type(value).__name__}")
        return str(value).strip()

    item = text("item_id", required=False)
    if item is not None and not item.lstrip("-").isdigit():
        raise TrendgenError(f"{path}:{line}: item_id {item!r} is not an integer")
    return IndexRow(
        line=line,
        path=text("path", required=True) or "",
        caption=text("caption", required=True) or "",
        item_id=int(item) if item is not None else None,
        category=text("category", required=False),
        split=text("split", required=False),
    )


def _all_or_none(index: Path, rows: list[IndexRow], key: str) -> bool:
    """Whether the index gives `key` on its rows; giving it on only some rows is an error."""
    given = [getattr(row, key) is not None for row in rows]
    if any(given) and not all(given):
        line = rows[given.index(False)].line
        raise TrendgenError(
            f"{index}:{line}: {key!r} is empty here but given on other rows; give it on all rows"
        )
    return all(given)
