"""`data=hf` with `data.hf.streaming=true`: the train split as a stream, val and test taken into memory.

The stream is split over DDP ranks (`datasets.distributed.split_dataset_by_node`; `datasets` splits each
rank's share over its DataLoader workers by file shard, so more workers than shards leaves some idle),
shuffled in a `data.hf.shuffle_buffer` buffer (reseeded each epoch) and capped at `data.limit` rows. Its
batches are tokenized as they come (`StreamCollate`); a caption's id is a stable hash of its text, so equal
captions are positives of one another across ranks, as in the map-style datasets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from trendgen.config import DataConfig
from trendgen.data.base import CaptionRows
from trendgen.data.hf.source import (
    HfCaptionDataset,
    category_id,
    category_names,
    check_columns,
    decode_image,
    held_out_val,
    open_splits,
    row_captions,
    split_name,
    split_of,
)
from trendgen.data.pixels import pixel_values

_EVAL_ROWS: dict[tuple, list[dict[str, Any]]] = {}


def caption_id(caption: str) -> int:
    """A stable 56-bit id of a text (equal texts, equal ids, on every rank and in every run)."""
    return int.from_bytes(hashlib.blake2b(caption.encode(), digest_size=7).digest(), "big")


def eval_rows(cfg: DataConfig, splits: dict[str, Any], split: str) -> tuple[str, list[dict[str, Any]]]:
    """The first `data.hf.eval_rows` rows of `split` (val without a val split: of train), kept in memory."""
    held_out = split == "val" and held_out_val(cfg, splits)
    name = split_name(cfg, "train") if held_out else split_name(cfg, split)
    key = (cfg.hf.path, cfg.hf.name, name, cfg.hf.eval_rows)
    if key not in _EVAL_ROWS:
        stream = split_of(splits, name, split, str(cfg.hf.path))
        _EVAL_ROWS[key] = list(stream.take(int(cfg.hf.eval_rows)))
    return name, _EVAL_ROWS[key]


def _stream_categories(cfg: DataConfig, splits: dict[str, Any]) -> list[str]:
    rows: list[dict[str, Any]] = []
    for split in ("val", "test"):
        try:
            rows += eval_rows(cfg, splits, split)[1]
        except Exception:  # a missing test split has no rows to name categories
            continue
    return category_names(cfg, splits, rows)


class ListImages:
    """Loads the image cell of row i of an in-memory list (picklable)."""

    def __init__(self, cells: list[Any], root: str | None) -> None:
        self.cells = cells
        self.root = root

    def __call__(self, row: int):
        return decode_image(self.cells[int(row)], self.root)


def build_streamed(cfg: DataConfig, split: str) -> Any:
    """train: a `StreamedCaptions`; val and test: their first `data.hf.eval_rows` rows as a CaptionDataset."""
    splits = open_splits(cfg, streaming=True)
    hf = cfg.hf
    categories = _stream_categories(cfg, splits)
    if split == "train":
        name = split_name(cfg, "train")
        stream = split_of(splits, name, split, str(hf.path))
        check_columns(stream.features, hf, f"{hf.path}[{name}]")
        if held_out_val(cfg, splits):
            stream = stream.skip(int(hf.eval_rows))  # those rows are val
        stream = stream.shuffle(seed=cfg.seed, buffer_size=int(hf.shuffle_buffer))
        if cfg.limit is not None:
            stream = stream.take(int(cfg.limit))
        return StreamedCaptions(stream, cfg, f"{hf.path}[{name}]", categories)
    name, rows = eval_rows(cfg, splits, split)
    where = f"{hf.path}[{name}]"
    check_columns(rows[0] if rows else None, hf, where)
    samples = CaptionRows()
    items: dict[str, int] = {}
    for n, row in enumerate(rows):
        key = str(row[hf.item_column]) if hf.item_column else f"row {n}"
        for caption in row_captions(row[hf.text_column], where, n, hf.text_column):
            samples.add(
                n,
                caption,
                items.setdefault(key, len(items)),
                category_id(row.get(hf.category_column), categories),
            )
    load = ListImages([row[hf.image_column] for row in rows], cfg.root)
    return samples.dataset(cfg, split, categories, load, HfCaptionDataset, where=where)


class StreamedCaptions(IterableDataset):
    """The train split as a stream of samples: one per (row, caption)."""

    def __init__(self, stream: Any, cfg: DataConfig, where: str, categories: list[str]) -> None:
        self.stream = stream
        self.hf = cfg.hf
        self.root = cfg.root
        self.where = where
        self.categories = categories
        self.category_template = cfg.category_template
        self.skipped: list[tuple[str, str]] = []  # rows are only seen in the workers
        self.captions: list[str] = []  # unknown ahead of time: a new tokenizer learns val's captions
        self.epoch = 0

    def category_prompts(self) -> list[str]:
        return [self.category_template.format(category=name) for name in self.categories]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from datasets.distributed import split_dataset_by_node

        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        worker = get_worker_info()
        stream = self.stream
        stream.set_epoch(self.epoch)  # a new shuffle each epoch
        self.epoch += 1
        if world > 1:  # each rank its share; `datasets` itself splits a rank's share over its workers
            stream = split_dataset_by_node(stream, rank=rank, world_size=world)
        hf = self.hf
        part = f"rank {rank}" + (f" worker {worker.id}" if worker else "")
        for n, row in enumerate(stream):
            where = f"{self.where} {part} row {n}"
            image, reason = decode_image(row.get(hf.image_column), self.root)
            item = row.get(hf.item_column) if hf.item_column else None
            for caption in row_captions(row.get(hf.text_column), where, n, hf.text_column):
                yield {
                    "image": image,
                    "reason": reason,
                    "describe": where,
                    "caption": caption,
                    "item_id": caption_id(str(item) if item is not None else where),
                    "category_id": category_id(row.get(hf.category_column), self.categories),
                }

    def collate(self, tokenizer: Any, image_processor: Any, max_length: int) -> StreamCollate:
        return StreamCollate(tokenizer, image_processor, max_length)


class StreamCollate:
    """Streamed samples into a training batch, tokenized here (the batch `CaptionCollate` makes)."""

    def __init__(self, tokenizer: Any, image_processor: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.processor = image_processor
        self.max_length = max_length
        blank = image_processor(images=[Image.new("RGB", (8, 8))], return_tensors="pt")
        self.no_pixels = blank["pixel_values"][:0]

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        kept = [s for s in samples if s["image"] is not None]
        skipped = [(s["describe"], s["reason"] or "unreadable") for s in samples if s["image"] is None]
        if kept:
            pixels = pixel_values(self.processor, [s["image"] for s in kept])
            tokens = self.tokenizer(
                [s["caption"] for s in kept],
                padding="max_length",
                max_length=self.max_length,
                truncation=True,
                return_tensors="pt",
            )
            input_ids, attention_mask = tokens["input_ids"].long(), tokens["attention_mask"].long()
        else:
            pixels = self.no_pixels
            input_ids = attention_mask = torch.zeros((0, self.max_length), dtype=torch.long)
        return {
            "pixel_values": pixels.float(),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "caption_ids": torch.tensor([caption_id(s["caption"]) for s in kept], dtype=torch.long),
            "item_ids": torch.tensor([s["item_id"] for s in kept], dtype=torch.long),
            "category_ids": torch.tensor([s["category_id"] for s in kept], dtype=torch.long),
            "index": torch.full((len(kept),), -1, dtype=torch.long),  # no dataset rows in a stream
            "skipped": skipped,
        }
