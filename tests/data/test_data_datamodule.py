"""FashionDataModule: the batch contract the CLIP LightningModule relies on, under a real Trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import transformers
from PIL import Image

from trendgen.config import DataConfig, FolderDataConfig, SyntheticDataConfig
from trendgen.data.datamodule import FashionDataModule
from trendgen.errors import TrendgenError
from trendgen.model.tokenizer import train_caption_tokenizer

TEMPLATES = ["a {color} {pattern} {garment}", "{color} {pattern} {garment}"]


def _processor() -> transformers.CLIPImageProcessor:
    return transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


class CountingTokenizer:
    """Delegates to a real tokenizer and counts how often it is asked to tokenize."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.tokenizer(*args, **kwargs)


def _module(cfg: DataConfig, max_length: int = 12) -> tuple[FashionDataModule, CountingTokenizer]:
    module = FashionDataModule(cfg, max_length=max_length)
    tokenizer = CountingTokenizer(train_caption_tokenizer(module.all_captions(), vocab_size=400))
    module.tokenizer, module.image_processor = tokenizer, _processor()
    return module, tokenizer


def _synthetic(**overrides: Any) -> SyntheticDataConfig:
    base = {"size": 40, "val_size": 10, "test_size": 6, "image_px": 24, "batch_size": 8, "num_workers": 0}
    return SyntheticDataConfig(name="synthetic", templates=list(TEMPLATES), **{**base, **overrides})


def test_batch_contract() -> None:
    module, tokenizer = _module(_synthetic())
    module.setup("fit")
    assert tokenizer.calls == 2  # train and val captions, each tokenized once, at setup
    dataset = module.dataset("train")
    table = module.table
    val = module.dataset("val")  # evaluation splits add their field texts (facet ranking)
    val_fields = {text for texts in val.fields.values() for text in texts}
    assert table is not None and len(table.captions) == len(
        set(dataset.captions) | set(val.captions) | val_fields
    )

    batches = list(module.train_dataloader())
    assert len(batches) == 40 // 8 and tokenizer.calls == 2  # no tokenizing per step
    batch = batches[0]
    assert batch["pixel_values"].shape == (8, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (8, 12)
    for key in ("input_ids", "attention_mask", "caption_ids", "item_ids", "category_ids"):
        assert batch[key].dtype == torch.long, key
    assert batch["skipped"] == []
    processor = _processor()
    for row, index in enumerate(batch["index"].tolist()):
        caption_id = int(batch["caption_ids"][row])
        assert table.captions[caption_id] == dataset.captions[index]
        alone = tokenizer.tokenizer(
            dataset.captions[index], padding="max_length", max_length=12, truncation=True, return_tensors="pt"
        )
        assert torch.equal(batch["input_ids"][row], alone["input_ids"][0])
        assert torch.equal(batch["attention_mask"][row], alone["attention_mask"][0])
        decoded = tokenizer.tokenizer.decode(batch["input_ids"][row], skip_special_tokens=True)
        assert decoded.replace(" ", "") == dataset.captions[index].replace(" ", "")
        assert int(batch["item_ids"][row]) == dataset.item_ids[index]
        assert int(batch["category_ids"][row]) == dataset.category_ids[index]
        expected = processor(images=[dataset[index]["image"]], return_tensors="pt")["pixel_values"][0]
        assert torch.allclose(batch["pixel_values"][row], expected)
    # Equal caption ids <=> equal captions <=> equal token rows.
    ids = torch.cat([b["caption_ids"] for b in batches])
    tokens = torch.cat([b["input_ids"] for b in batches])
    for a in range(len(ids)):
        for b in range(len(ids)):
            assert (ids[a] == ids[b]) == torch.equal(tokens[a], tokens[b])

    orders = [torch.cat([b["index"] for b in module.train_dataloader()]) for _ in range(2)]
    assert not torch.equal(orders[0], orders[1])  # shuffled each epoch
    assert module.category_prompts == module.dataset("train").category_prompts()


def test_val_keeps_every_sample_and_train_drops_the_ragged_batch() -> None:
    module, _ = _module(_synthetic(size=21, val_size=11, batch_size=4))
    module.setup("fit")
    train = list(module.train_dataloader())
    assert [len(b["index"]) for b in train] == [4] * 5  # 21 samples: the last, short batch is dropped
    val = list(module.val_dataloader())
    assert sorted(torch.cat([b["index"] for b in val]).tolist()) == list(range(11))
    module.setup("test")
    assert sum(len(b["index"]) for b in module.test_dataloader()) == 6


def test_per_rank_batch_is_the_global_batch_over_the_world() -> None:
    module, _ = _module(_synthetic(batch_size=8))
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False)
    module.trainer = trainer
    assert trainer.world_size == 2 and module.per_rank_batch_size() == 4
    module.setup("fit")
    assert module.train_dataloader().batch_size == 4
    module.cfg.batch_size = 1
    with pytest.raises(TrendgenError, match="smaller than the world size 2"):
        module.per_rank_batch_size()


def test_a_batch_of_only_bad_images_is_empty_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.jpg").write_text("not an image")
    (tmp_path / "captions.csv").write_text("path,caption\na.jpg,a coat\nb.jpg,a dress\n")
    module, _ = _module(
        FolderDataConfig(name="folder", root=str(tmp_path), index=None, batch_size=2, num_workers=0)
    )
    module.setup("test")
    (batch,) = list(module.test_dataloader())
    assert batch["pixel_values"].shape == (0, 3, 32, 32)
    assert batch["input_ids"].shape == (0, 12) and batch["caption_ids"].shape == (0,)
    assert [reason.split(" (")[0] for _, reason in batch["skipped"]] == ["empty file", "not an image"]


class BatchRecorder(pl.LightningModule):
    """A minimal trainable module that checks every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.sizes: list[int] = []

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        assert batch["pixel_values"].shape[0] == batch["input_ids"].shape[0] == batch["item_ids"].shape[0]
        self.sizes.append(batch["pixel_values"].shape[0])
        return self.layer(batch["pixel_values"].mean(dim=(2, 3))).mean()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.sizes.append(-batch["pixel_values"].shape[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.timeout(180)
def test_trainer_fit_with_workers_records_skipped_files(tmp_path: Path) -> None:
    names = [f"img{i}.png" for i in range(10)]
    for i, name in enumerate(names):
        Image.new("RGB", (20, 30), (20 * i, 80, 160)).save(tmp_path / name)
    (tmp_path / names[3]).write_bytes(b"")  # one bad file in a good set
    rows = [f"{name},a photo number {i},{'train' if i < 8 else 'val'}" for i, name in enumerate(names)]
    (tmp_path / "captions.csv").write_text("path,caption,split\n" + "\n".join(rows) + "\n")
    cfg = FolderDataConfig(name="folder", root=str(tmp_path), index=None, batch_size=4, num_workers=2)
    module, _ = _module(cfg)
    model = BatchRecorder()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=module)
    train_sizes = [s for s in model.sizes if s > 0]
    assert sum(train_sizes) == 2 * 7  # 8 train rows, one bad file dropped from its batch, two epochs
    assert sum(-s for s in model.sizes if s < 0) == 2 * 2
    count, records = module.skipped_files()
    assert count == 1 and records[0][0] == str(tmp_path / names[3]) and "empty file" in records[0][1]


def test_an_eval_only_folder_gives_prompts_and_a_test_loader(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (20, 20), (200, 30, 30)).save(tmp_path / name)
    (tmp_path / "captions.csv").write_text(
        "path,caption,category,split\na.png,a red coat,coat,test\nb.png,a red dress,dress,test\n"
        "c.png,a red coat,coat,test\n"
    )
    cfg = FolderDataConfig(
        name="folder", root=str(tmp_path), index=None, batch_size=8, num_workers=0, split="test"
    )
    module = FashionDataModule(cfg, train_caption_tokenizer(["a red coat", "a red dress"], vocab_size=300))
    module.image_processor = _processor()
    assert module.category_prompts == ["a photo of a coat", "a photo of a dress"]  # no train rows needed
    module.setup("test")
    (batch,) = list(module.test_dataloader())
    assert batch["category_ids"].tolist() == [0, 1, 0]
    assert batch["caption_ids"][0] == batch["caption_ids"][2] != batch["caption_ids"][1]


def test_a_batch_hands_its_integer_tensors_over_in_one_shared_storage() -> None:
    """From a worker each storage is passed by its own file descriptor: the six integer tensors of a batch
    are contiguous views of one buffer, with the values the table and the dataset give."""
    module, _ = _module(_synthetic(num_workers=1))
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    keys = ("input_ids", "attention_mask", "caption_ids", "item_ids", "category_ids", "index")
    storages = {batch[k].untyped_storage().data_ptr() for k in keys}
    assert len(storages) == 1 and all(batch[k].is_contiguous() for k in keys)
    dataset, table = module.dataset("train"), module.table
    rows = batch["index"].tolist()
    assert batch["item_ids"].tolist() == [dataset.item_ids[i] for i in rows]
    assert batch["category_ids"].tolist() == [dataset.category_ids[i] for i in rows]
    assert torch.equal(batch["input_ids"], table.input_ids[batch["caption_ids"]])
    assert torch.equal(batch["attention_mask"], table.attention_mask[batch["caption_ids"]])
