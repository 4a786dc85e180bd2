"""DeepFashion In-shop Clothes Retrieval Benchmark (`data=deepfashion_inshop`).

Layout under `data.root`: `Eval/list_eval_partition.txt` (a count line, a header line
`image_name item_id evaluation_status`, then rows such as
`img/WOMEN/Dresses/id_00000002/02_1_front.jpg id_00000002 train`, status train, query or gallery), the images
under `img/` (or `Img/img/`), and optionally `Anno/list_description_inshop.json` (a JSON list of
`{"item": "id_...", "color": "...", "description": ["sentence", ...]}`; items missing from it, or a release
without it, get captions from their path alone).

Splits: `test` is the benchmark's query and gallery images together, each flagged (`is_query`), so validation
scores query→gallery retrieval by item id (`q2g_R@k`: the share of queries whose top k gallery images hold
one of the same item). `train` is the train status less a seeded `data.val_fraction` of its items, which
form `val`; in `val` each item's first image (by name) is its query and the rest its gallery. Items never
cross splits. Captions fill `data.templates` with `{gender}` (women / men), `{category}` (the path's folder,
e.g. "blouses and shirts"), `{color}` and `{description}` (the item's first description sentence, or
"{color} {gender}'s {category}" when it has none). Category ids follow the sorted category names.

A malformed row is refused with its file and line; rows whose image file is missing are skipped and listed
in `dataset.skipped`; images that do not decode are skipped per batch like every dataset's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trendgen.config import DataConfig
from trendgen.data.base import CaptionDataset, CaptionRows, file_loader, render_caption, require_templates

# the count-line/header-line reader and the image folder finder are the category benchmark's
from trendgen.data.deepfashion import _counted_rows as counted_rows
from trendgen.data.deepfashion import _image_base as image_base
from trendgen.errors import TrendgenError

SPLITS = ("train", "val", "test")
STATUSES = ("train", "query", "gallery")
DESCRIPTION_FILES = ("Anno/list_description_inshop.json", "list_description_inshop.json")
_ITEM = re.compile(r"id_(\d+)")


@dataclass
class InShopRow:
    line: int
    name: str  # img/<GENDER>/<Category>/<item>/<file>.jpg
    item: str
    status: str
    gender: str
    category: str


@dataclass
class ItemText:
    color: str
    description: str


def build(cfg: DataConfig, split: str) -> CaptionDataset:
    """The In-shop split (train / val / test) under `cfg.root`."""
    if split not in SPLITS:
        raise TrendgenError(f"DeepFashion In-shop has splits {', '.join(SPLITS)}, not {split!r}")
    if not cfg.root:
        raise TrendgenError("data.root is not set: point it at the unpacked In-shop benchmark folder")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise TrendgenError(f"DeepFashion In-shop root {root} is not a folder")
    templates = require_templates(cfg)
    partition = root / "Eval" / "list_eval_partition.txt"
    if not partition.is_file():
        raise TrendgenError(f"missing In-shop partition file {partition}")
    rows = read_partition(partition)
    texts = read_descriptions(next((root / f for f in DESCRIPTION_FILES if (root / f).is_file()), None))
    categories = sorted({row.category for row in rows})
    category_index = {name: i for i, name in enumerate(categories)}
    picked, is_query = _split_rows(rows, split, cfg.val_fraction, cfg.seed)
    base = image_base(root)
    template_ids = np.random.default_rng([cfg.seed, SPLITS.index(split)]).integers(
        len(templates), size=len(picked)
    )
    samples, queries = CaptionRows(), []
    for row, query, t in zip(picked, is_query, template_ids, strict=True):
        image = base / row.name
        if not image.is_file():
            samples.skipped.append((str(image), f"missing file (listed on {partition.name} line {row.line})"))
            continue
        text = texts.get(row.item)
        color = text.color if text else ""
        look = render_caption(
            "{color} {gender}'s {category}", color=color, gender=row.gender, category=row.category
        )
        fields = {
            "gender": row.gender,
            "category": row.category,
            "color": color,
            "description": (text.description if text and text.description else look),
        }
        item = int(_ITEM.fullmatch(row.item).group(1))  # type: ignore[union-attr]
        samples.add(image, render_caption(templates[t], **fields), item, category_index[row.category])
        queries.append(query)
    return samples.dataset(
        cfg, split, categories, file_loader(), is_query=None if split == "train" else queries
    )


def read_partition(path: Path) -> list[InShopRow]:
    """Every row of `list_eval_partition.txt`, validated (count line, header, 3 columns, known status)."""
    rows = []
    for line_no, text in counted_rows(path):
        parts = text.split()
        if len(parts) != 3:
            raise TrendgenError(
                f"{path}:{line_no}: expected 3 columns (image_name item_id evaluation_status), "
                f"found {len(parts)}: {text[:80]!r}"
            )
        name, item, status = parts
        if status not in STATUSES:
            raise TrendgenError(
                f"{path}:{line_no}: evaluation status {status!r} is not train, query or gallery"
            )
        if not _ITEM.fullmatch(item):
            raise TrendgenError(f"{path}:{line_no}: item id {item!r} is not of the form id_<digits>")
        folders = name.split("/")
        if len(folders) < 5 or folders[0] != "img":
            raise TrendgenError(
                f"{path}:{line_no}: image name {name!r} is not img/<GENDER>/<Category>/<item>/<file>"
            )
        rows.append(InShopRow(line_no, name, item, status, _readable(folders[1]), _readable(folders[2])))
    return rows


def read_descriptions(path: Path | None) -> dict[str, ItemText]:
    """item id -> colour and first description sentence, from `list_description_inshop.json` ({} without)."""
    if path is None:
        return {}
    try:
        entries: Any = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise TrendgenError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(entries, list):
        raise TrendgenError(f"{path}: expected a JSON list of item descriptions")
    texts = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("item"), str):
            raise TrendgenError(f'{path}: entry {i} has no "item" id')
        description = entry.get("description") or []
        sentences = [description] if isinstance(description, str) else description
        if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise TrendgenError(
                f"{path}: entry {i} ({entry['item']}): description must be text or a list of text"
            )
        first = next((" ".join(s.split()) for s in sentences if s.strip()), "")
        color = entry.get("color") or ""
        texts[entry["item"]] = ItemText(color=" ".join(str(color).split()).lower(), description=first)
    return texts


def _split_rows(rows: list[InShopRow], split: str, val_fraction: float, seed: int) -> tuple[list, list]:
    """The rows of `split` and whether each is a query."""
    if split == "test":
        picked = [row for row in rows if row.status in ("query", "gallery")]
        return picked, [row.status == "query" for row in picked]
    if not 0.0 <= val_fraction < 1.0:
        raise TrendgenError(f"data.val_fraction={val_fraction}: the share of train items for val, in [0, 1)")
    train = [row for row in rows if row.status == "train"]
    items = sorted({row.item for row in train})
    n_val = round(len(items) * val_fraction)
    if val_fraction > 0 and n_val == 0 and len(items) > 1:  # a small release still gets a val item
        n_val = 1
    val_items = set(np.random.default_rng(seed).permutation(items)[:n_val].tolist())
    if split == "train":
        picked = [row for row in train if row.item not in val_items]
        return picked, [False] * len(picked)
    picked = sorted((row for row in train if row.item in val_items), key=lambda r: (r.item, r.name))
    first_of_item: dict[str, int] = {}
    for i, row in enumerate(picked):
        first_of_item.setdefault(row.item, i)
    counts = {item: sum(1 for row in picked if row.item == item) for item in first_of_item}
    # an item with one image has nothing to find: it stays in the gallery as a distractor
    return picked, [first_of_item[row.item] == i and counts[row.item] > 1 for i, row in enumerate(picked)]


def _readable(folder: str) -> str:
    """`Blouses_Shirts` -> "blouses and shirts", `WOMEN` -> "women"."""
    return " and ".join(part.strip().lower() for part in folder.split("_") if part.strip())
