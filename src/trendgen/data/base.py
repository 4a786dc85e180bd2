"""`CaptionDataset`, the shape every trendgen dataset takes, and `build_dataset`, which picks one by name.

All metadata (captions, item ids, category ids) is known without decoding a single image, so the caption table
can be tokenized once and evaluation can group by item and category; images are decoded only in
`__getitem__`, which runs in DataLoader workers.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from trendgen.config import DataConfig
from trendgen.data.images import DEFAULT_MAX_PIXELS, load_rgb
from trendgen.errors import TrendgenError

Loader = Callable[[Any], tuple[Image.Image | None, str | None]]


class CaptionDataset(Dataset):
    """Captioned images: one row per (image, caption) sample.

    `sources[i]` is whatever `load` needs to produce image i (a path, an array index, a drawing spec).
    `skipped` lists `(describe, reason)` for rows dropped while the index was read (e.g. missing files);
    images that fail to decode are reported later, per batch, by the DataLoader's collate. `is_query` (image
    retrieval benchmarks such as DeepFashion In-shop) flags the query images; the others are the gallery.
    `fields` holds each row's texts per product field (`{"color": ["red", ...], ...}`; "" where an item has
    none): what multi-field training (`data.fields`) and the facet ranking tasks read.
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
        fields: dict[str, Sequence[str]] | None = None,
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
        self.fields = {name: list(values) for name, values in (fields or {}).items()}
        if any(len(values) != n for values in self.fields.values()):
            raise ValueError("every field must have one entry per sample")
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
        picked.fields = {name: [values[i] for i in indices] for name, values in self.fields.items()}
        return picked


class PartLoader:
    """Picklable loader of a concatenation: a source `(part, row, inner)` goes to that part's own loader."""

    def __init__(self, loaders: Sequence[Loader]) -> None:
        self.loaders = list(loaders)

    def __call__(self, source: tuple[int, int, Any]) -> tuple[Image.Image | None, str | None]:
        part, _, inner = source
        return self.loaders[part](inner)


class ConcatCaptionDataset(CaptionDataset):
    """The rows of several datasets, one part after another (metadata only; nothing is decoded). `rows[k]`
    picks part k's rows, in that order (None: all of them).

    Name, split, categories and prompts are the first part's. Each later part's item ids and category ids are
    offset past those of the parts before it, so no id of one source matches one of another (a later part's
    categories are not zero-shot classes); "no category" (-1) stays -1. Every part's skip records are kept,
    and `describe` names a row as its own part would. The first part's fields are kept; a later part's rows
    without one hold "" (no text: e.g. replayed rows, which train the caption term only).
    """

    def __init__(
        self, parts: Sequence[CaptionDataset], rows: Sequence[Sequence[int] | None] | None = None
    ) -> None:
        if not parts:
            raise ValueError("ConcatCaptionDataset needs at least one part")
        rows = rows or [None] * len(parts)
        if len(rows) != len(parts):
            raise ValueError("rows must have one entry per part")
        first = parts[0]
        sources: list[tuple[int, int, Any]] = []
        captions: list[str] = []
        item_ids: list[int] = []
        category_ids: list[int] = []
        item_offset = category_offset = 0
        for k, (part, picked) in enumerate(zip(parts, rows, strict=True)):
            picked = range(len(part)) if picked is None else picked
            sources += [(k, r, part.sources[r]) for r in picked]
            captions += [part.captions[r] for r in picked]
            item_ids += [part.item_ids[r] + item_offset for r in picked]
            category_ids += [
                c + category_offset if c >= 0 else c for c in (part.category_ids[r] for r in picked)
            ]
            item_offset = max(item_ids, default=-1) + 1
            category_offset = max(len(part.categories) + category_offset, max(category_ids, default=-1) + 1)
        with_query = any(part.is_query is not None for part in parts)
        fields = {
            name: [parts[k].fields[name][r] if name in parts[k].fields else "" for k, r, _ in sources]
            for name in first.fields
        }
        super().__init__(
            name=first.name,
            split=first.split,
            sources=sources,
            captions=captions,
            item_ids=item_ids,
            category_ids=category_ids,
            categories=first.categories,
            category_template=first.category_template,
            load=PartLoader([part._load for part in parts]),
            skipped=[record for part in parts for record in part.skipped],
            is_query=[_query(parts[k], r) for k, r, _ in sources] if with_query else None,
            fields=fields,
        )
        self.part_names = [(part.name, part.split) for part in parts]

    def part_of(self, i: int) -> int:
        """Which part (0: the first) row `i` comes from."""
        return self.sources[i][0]

    def describe(self, i: int) -> str:
        part, row, source = self.sources[i]
        if isinstance(source, str | Path):
            return str(source)
        name, split = self.part_names[part]
        return f"{name}/{split}/{row}"


def _query(dataset: CaptionDataset, row: int) -> bool:
    return dataset.is_query is not None and dataset.is_query[row]


def file_loader(max_pixels: int = DEFAULT_MAX_PIXELS) -> Loader:
    """A loader for datasets whose sources are image paths (picklable, for spawned workers)."""
    return functools.partial(load_rgb, max_pixels=max_pixels)


@dataclass
class CaptionRows:
    """The samples of a caption dataset as its builder reads them, then the dataset they make."""

    sources: list[Any] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    item_ids: list[int] = field(default_factory=list)
    category_ids: list[int] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, source: Any, caption: str, item_id: int, category_id: int) -> None:
        self.sources.append(source)
        self.captions.append(caption)
        self.item_ids.append(item_id)
        self.category_ids.append(category_id)

    def dataset(
        self,
        cfg: DataConfig,
        split: str,
        categories: Sequence[str],
        load: Loader,
        kind: type[CaptionDataset] = CaptionDataset,
        **extra: Any,
    ) -> CaptionDataset:
        """The `kind` of dataset over these rows, named and templated as `cfg` says."""
        return kind(
            name=str(cfg.name),
            split=split,
            sources=self.sources,
            captions=self.captions,
            item_ids=self.item_ids,
            category_ids=self.category_ids,
            categories=list(categories),
            category_template=cfg.category_template,
            load=load,
            skipped=self.skipped,
            **extra,
        )


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
