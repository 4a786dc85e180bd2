"""`FashionDataModule`: captioned fashion images as Lightning batches for contrastive CLIP training.

Every unique caption is tokenized once, at setup, into a table (`input_ids`, `attention_mask`); a sample
carries only its row in that table (`caption_ids`), so equal ids mean equal captions, which the loss treats as
positives. Decoding and the image processor run in DataLoader workers (`CaptionCollate`); images that cannot
be used are dropped from their batch and listed in `batch["skipped"]`, and the module keeps a run-wide record
(`skipped_files()`).

`replay` (a `conf/replay/` node) mixes a seeded subset of another dataset's train split into the training
split only (see `trendgen.data.replay`).

`data.augment` augments the training split only (see `trendgen.data.augment`): in the workers, before the
processor (`where=workers`), or on the batch after it reached the device (`where=batch`, kornia).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset

from trendgen.config import DataConfig
from trendgen.data.augment import BatchAugment, SampleAugment, check_augment
from trendgen.data.base import CaptionDataset
from trendgen.data.fields import CAPTION, check_fields, field_batch
from trendgen.data.pixels import pixel_values
from trendgen.data.registry import build_dataset
from trendgen.data.replay import mix_replay, replay_enabled
from trendgen.errors import TrendgenError

log = logging.getLogger(__name__)


class CaptionTable:
    """Unique captions, each tokenized once: row i of `input_ids` / `attention_mask` is `captions[i]`."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self.captions: list[str] = []
        self.ids: dict[str, int] = {}
        self.input_ids = torch.zeros((0, max_length), dtype=torch.long)
        self.attention_mask = torch.zeros((0, max_length), dtype=torch.long)

    def add(self, captions: list[str], tokenizer: Any) -> np.ndarray:
        """Table row of each caption; captions not yet in the table are tokenized in one call."""
        new = list(dict.fromkeys(c for c in captions if c not in self.ids))
        if new:
            tokens = tokenizer(
                new, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
            )
            self.input_ids = torch.cat([self.input_ids, tokens["input_ids"].long()])
            self.attention_mask = torch.cat([self.attention_mask, tokens["attention_mask"].long()])
            for caption in new:
                self.ids[caption] = len(self.captions)
                self.captions.append(caption)
        return np.array([self.ids[c] for c in captions], dtype=np.int64)


class CaptionCollate:
    """Turns `dataset[i]` dicts into a training batch; runs in DataLoader workers (picklable)."""

    def __init__(
        self,
        dataset: CaptionDataset,
        caption_ids: np.ndarray,
        table: CaptionTable,
        processor: Any,
        augment: SampleAugment | None = None,
        field_ids: dict[str, np.ndarray] | None = None,
    ):
        self.dataset = dataset
        self.fields = {  # per field: the caption-table row of each sample's text, whether it has one
            name: (
                torch.as_tensor(ids, dtype=torch.long),
                torch.tensor([bool(t) for t in dataset.fields[name]]),
            )
            for name, ids in (field_ids or {}).items()
        }
        self.augment = augment  # applied to each decoded image before the processor (training only)
        self.caption_ids = torch.as_tensor(caption_ids, dtype=torch.long)
        self.item_ids = torch.tensor(dataset.item_ids, dtype=torch.long)
        self.category_ids = torch.tensor(dataset.category_ids, dtype=torch.long)
        self.is_query = None if dataset.is_query is None else torch.tensor(dataset.is_query, dtype=torch.bool)
        self.input_ids = table.input_ids
        self.attention_mask = table.attention_mask
        self.processor = processor
        # The shape an empty batch takes: what the processor makes of one image, less the image.
        self.no_pixels = processor(images=[Image.new("RGB", (8, 8))], return_tensors="pt")["pixel_values"][:0]

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        kept = [s for s in samples if s["image"] is not None]
        skipped = [
            (self.dataset.describe(s["index"]), s["reason"] or "unreadable")
            for s in samples
            if s["image"] is None
        ]
        index = torch.tensor([s["index"] for s in kept], dtype=torch.long)
        if kept:
            images = [s["image"] for s in kept]
            if self.augment is not None:
                images = [self.augment(image) for image in images]
            pixels = pixel_values(self.processor, images)
        else:
            pixels = self.no_pixels
        caption_ids = self.caption_ids[index]
        query = {} if self.is_query is None else {"is_query": self.is_query[index]}  # query/gallery sets
        if self.fields:  # multi-field training, facet ranking
            query["fields"] = field_batch(self.fields, index, self.input_ids, self.attention_mask)
        input_ids, attention_mask, caption_ids, item_ids, category_ids, index = one_storage(
            self.input_ids[caption_ids],
            self.attention_mask[caption_ids],
            caption_ids,
            self.item_ids[index],
            self.category_ids[index],
            index,
        )
        return {
            **query,
            "pixel_values": pixels.float(),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "caption_ids": caption_ids,
            "item_ids": item_ids,
            "category_ids": category_ids,
            "index": index,  # row of the dataset each sample came from
            "skipped": skipped,
        }


def one_storage(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The same int64 tensors as contiguous views of one buffer: a worker hands a batch to the training
    process one shared storage at a time (a file descriptor each), so six become one (a batch of 8 arrived
    in 1.2-1.6 ms against 3.4-3.9, two workers, this machine)."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    views, offset = [], 0
    for t in tensors:
        views.append(flat[offset : offset + t.numel()].view(t.shape))
        offset += t.numel()
    return views


class FashionDataModule(pl.LightningDataModule):
    """Train / val / test loaders over `build_dataset(data_cfg, split)`.

    `tokenizer` and `image_processor` may be set after construction (a model built from scratch needs
    `all_captions()` to train its tokenizer first); both must be set before `setup`. `replay_cfg` (the
    `replay` node) adds replayed rows to the training split; a bad setting fails here.
    """

    def __init__(
        self,
        data_cfg: DataConfig,
        tokenizer: Any = None,
        image_processor: Any = None,
        max_length: int = 77,
        replay_cfg: Any = None,
    ) -> None:
        super().__init__()
        self.cfg = data_cfg
        self.replay = replay_cfg if replay_enabled(replay_cfg) else None
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_length = max_length
        self.table: CaptionTable | None = None
        self._datasets: dict[str, CaptionDataset] = {}
        self._caption_ids: dict[str, np.ndarray] = {}
        self._field_ids: dict[str, dict[str, np.ndarray]] = {}
        self._skipped: dict[str, str] = {}
        self._batch_augment: BatchAugment | None = None

    # datasets and captions
    def dataset(self, split: str) -> CaptionDataset:
        """The dataset of `split`, built once (train: with the replayed rows, if any); rows dropped while
        reading its index count as skipped."""
        if split not in self._datasets:
            dataset = build_dataset(self.cfg, split)
            if self.replay is not None and split == self.cfg.train_split:
                dataset = mix_replay(dataset, self.replay)
            self._datasets[split] = dataset
            self._skipped.update(dataset.skipped)
        return self._datasets[split]

    def all_captions(self) -> list[str]:
        """Unique captions of the train (replay included) and val splits plus the category prompts (to train a
        tokenizer on)."""
        captions = []
        for split in (self.cfg.train_split, self.cfg.val_split):
            dataset = self.dataset(split)
            fields = getattr(dataset, "fields", {})
            captions += dataset.captions + [text for texts in fields.values() for text in texts if text]
        ensemble = [prompt for prompts in self.zero_shot_prompts for prompt in prompts]
        return list(dict.fromkeys(captions + self.category_prompts + ensemble))

    def has_test_split(self) -> bool:
        """True when `data.split` is neither train nor val and has samples: fit ends by testing on it."""
        if self.cfg.split in (self.cfg.train_split, self.cfg.val_split):
            return False
        try:
            self.dataset(self.cfg.split)
        except TrendgenError as err:
            log.info("no test after fit: %s", err)
            return False
        return True

    @property
    def category_prompts(self) -> list[str]:
        """One zero-shot prompt per category (index = category id)."""
        return self._any_dataset().category_prompts()

    @property
    def zero_shot_prompts(self) -> list[list[str]]:
        """[template][category id] zero-shot prompts: `data.zero_shot_templates` (a prompt ensemble), or the
        one `data.category_template` when that list is empty. Templates fill `{category}`."""
        templates = list(self.cfg.zero_shot_templates) or [self.cfg.category_template]
        prompts = []
        for template in templates:
            try:
                prompts.append([template.format(category=name) for name in self.categories])
            except (KeyError, IndexError, ValueError) as err:
                raise TrendgenError(
                    f"data.zero_shot_templates: {template!r} must name the category as {{category}} ({err})"
                ) from None
        return prompts

    def facet_names(self) -> list[str]:
        """The product fields of the evaluated split (`data.split`), which its batches carry."""
        return list(getattr(self.dataset(self.cfg.split), "fields", {}))

    @property
    def categories(self) -> list[str]:
        """Category names (index = category id); the same in every split."""
        return self._any_dataset().categories

    # Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if getattr(self.cfg, "augment", None) is not None and self.cfg.augment.enabled:
            check_augment(self.cfg.augment)  # a bad setting fails before the first batch
        splits = {
            "fit": [self.cfg.train_split, self.cfg.val_split],
            "validate": [self.cfg.val_split],
            "test": [self.cfg.split],
            "predict": [self.cfg.split],
        }.get(stage or "fit", [self.cfg.train_split, self.cfg.val_split])
        for split in splits:
            self._tokenized(split)

    def train_dataloader(self) -> DataLoader:
        split = self.cfg.train_split
        if isinstance(self.dataset(split), IterableDataset):  # data=hf streaming
            if self._augments("workers"):  # the stream's own collate decodes and processes
                raise TrendgenError(
                    "data.augment.where=workers does not reach a streamed split: use data.augment.where=batch"
                )
            return self._stream_loader(self.dataset(split))
        batch_size, size = self.per_rank_batch_size(), len(self.dataset(split))
        if size < batch_size:
            raise TrendgenError(f"the {split} split has {size} samples, fewer than one batch of {batch_size}")
        return self._loader(split, shuffle=True, drop_last=True, augment=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.cfg.val_split, shuffle=False, drop_last=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.cfg.split, shuffle=False, drop_last=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.cfg.split, shuffle=False, drop_last=False)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Keep a run-wide record of the files the workers had to skip (runs in the main process)."""
        if isinstance(batch, dict):
            self._skipped.update(batch.get("skipped", ()))
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """`data.augment.where=batch`: kornia augments training batches on their device (never eval's)."""
        training = self.trainer is not None and self.trainer.training
        if training and isinstance(batch, dict) and self._augments("batch"):
            if self._batch_augment is None:
                self._batch_augment = BatchAugment(self.cfg.augment, self.image_processor)
            batch["pixel_values"] = self._batch_augment(batch["pixel_values"])
        return batch

    # helpers
    def per_rank_batch_size(self) -> int:
        """`data.batch_size` is the global batch: each of the world's ranks loads its share."""
        world = self.trainer.world_size if self.trainer is not None else 1
        per_rank = self.cfg.batch_size // world
        if per_rank < 1:
            raise TrendgenError(
                f"data.batch_size={self.cfg.batch_size} is smaller than the world size {world}"
            )
        return per_rank

    def skipped_files(self) -> tuple[int, list[tuple[str, str]]]:
        """(count, [(file or sample, reason)]) of every distinct sample skipped so far in this process."""
        return len(self._skipped), sorted(self._skipped.items())

    def collate_for(self, split: str, augment: bool = False) -> CaptionCollate:
        """The collate function of `split`'s loader (tokenizes the split's captions if setup has not);
        `augment`: with the per-sample training augmentation (`data.augment.where=workers`)."""
        sample_augment = SampleAugment(self.cfg.augment, self.image_processor) if augment else None
        caption_ids = self._tokenized(split)
        return CaptionCollate(
            self.dataset(split),
            caption_ids,
            self.table,
            self.image_processor,
            sample_augment,
            self._field_ids.get(split),
        )

    def _augments(self, where: str) -> bool:
        augment = getattr(self.cfg, "augment", None)
        return bool(augment is not None and augment.enabled and augment.where == where)

    def _tokenized(self, split: str) -> np.ndarray:
        """Caption-table rows of `split`'s samples; new captions are tokenized now, once."""
        if self.tokenizer is None or self.image_processor is None:
            raise ValueError("FashionDataModule needs a tokenizer and an image processor before setup")
        if self.table is None:
            self.table = CaptionTable(self.max_length)
        if split not in self._caption_ids:
            dataset, names = self.dataset(split), self._fields_of(split)
            texts = [dataset.captions, *(dataset.fields[name] for name in names)]
            rows = self.table.add([text for part in texts for text in part], self.tokenizer)  # one call
            n = len(dataset.captions)
            self._caption_ids[split] = rows[:n]
            self._field_ids[split] = {name: rows[n * (k + 1) : n * (k + 2)] for k, name in enumerate(names)}
        return self._caption_ids[split]

    def _fields_of(self, split: str) -> list[str]:
        """The fields a split's batches carry: the training split those `data.fields` trains (checked: each
        exists and every row has it); the others every field the dataset has (facet ranking)."""
        dataset = self.dataset(split)
        if split != self.cfg.train_split:
            return list(getattr(dataset, "fields", {}))
        names = [name for name in getattr(self.cfg, "fields", None) or {} if name != CAPTION]
        check_fields(dataset, names)
        return names

    def _any_dataset(self) -> CaptionDataset:
        """A built split (all share the categories), else the first of train, eval, val that has rows."""
        if self._datasets:
            return next(iter(self._datasets.values()))
        first_error: TrendgenError | None = None
        for split in dict.fromkeys([self.cfg.train_split, self.cfg.split, self.cfg.val_split]):
            try:
                return self.dataset(split)
            except TrendgenError as err:  # e.g. a folder index whose rows are all in the test split
                first_error = first_error or err
        assert first_error is not None
        raise first_error

    def _stream_loader(self, stream: Any) -> DataLoader:
        """A streamed split: sharded and shuffled by the stream itself, tokenized batch by batch."""
        workers = self.cfg.num_workers
        return DataLoader(
            stream,
            batch_size=self.per_rank_batch_size(),
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.cfg.pin_memory,
            collate_fn=stream.collate(self.tokenizer, self.image_processor, self.max_length),
        )

    def _loader(self, split: str, shuffle: bool, drop_last: bool, augment: bool = False) -> DataLoader:
        workers = self.cfg.num_workers
        return DataLoader(
            self.dataset(split),
            batch_size=self.per_rank_batch_size(),
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.cfg.pin_memory,
            collate_fn=self.collate_for(split, augment=augment and self._augments("workers")),
        )
