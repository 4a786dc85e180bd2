"""data=hf from fixtures in the layouts `datasets` writes: save_to_disk folders and parquet files, map-style
and streamed; bad images skipped and recorded, malformed rows refused with their split and row."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from helpers.clip import model_cfg, trainer
from omegaconf import OmegaConf
from PIL import Image

from trendgen.config import HfDataConfig
from trendgen.data import build_dataset
from trendgen.data.datamodule import FashionDataModule
from trendgen.errors import TrendgenError
from trendgen.model.build import load_clip
from trendgen.model.module import ClipFineTuner

torch.set_num_threads(1)
GARMENTS = ["coat", "dress", "skirt"]


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 28), (shade, 60, 200 - shade)).save(buffer, format="PNG")
    return buffer.getvalue()


def table(n: int, offset: int = 0, list_captions: bool = False, bad: dict | None = None) -> Dataset:
    """n rows: item i // 2 (two photos per item), garment i % 3; `bad` replaces some image cells."""
    images = [{"bytes": png(10 * (i + offset)), "path": None} for i in range(n)]
    for row, cell in (bad or {}).items():
        images[row] = cell
    texts = [f"a {GARMENTS[i % 3]} number {(i + offset) // 2}" for i in range(n)]
    features = {
        "image": ImageFeature(),
        "caption": [Value("string")] if list_captions else Value("string"),
        "product": Value("string"),
        "label": ClassLabel(names=GARMENTS),
    }
    return Dataset.from_dict(
        {
            "image": images,
            "caption": [[t, t.upper()] for t in texts] if list_captions else texts,
            "product": [f"p{(i + offset) // 2}" for i in range(n)],
            "label": [i % 3 for i in range(n)],
        },
        features=Features(features),
    )


def config(path: Path, tmp_path: Path, **hf) -> HfDataConfig:
    cfg = OmegaConf.structured(HfDataConfig)
    settings = {"path": str(path), "text_column": "caption", "item_column": "product"}
    settings |= {"category_column": "label", "cache_dir": str(tmp_path / "hf_cache"), **hf}
    cfg.merge_with({"name": "hf", "batch_size": 4, "num_workers": 0, "val_fraction": 0.25, "hf": settings})
    return cfg


@pytest.fixture
def saved(tmp_path) -> Path:
    """A save_to_disk DatasetDict (train, validation, test); validation holds a bad and a missing image."""
    folder = tmp_path / "saved"
    bad = {1: {"bytes": b"<html>403</html>", "path": None}, 2: None}
    DatasetDict(
        {"train": table(8), "validation": table(4, 100, bad=bad), "test": table(4, 200)}
    ).save_to_disk(str(folder))
    return folder


@pytest.fixture
def parquet(tmp_path) -> Path:
    """Parquet files as the hub lays them out (data/train-*.parquet, data/test-*.parquet), no val split."""
    folder = tmp_path / "parquet"
    (folder / "data").mkdir(parents=True)
    table(8, list_captions=True).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    table(4, 200, list_captions=True).to_parquet(str(folder / "data" / "test-00000-of-00001.parquet"))
    return folder


def test_a_save_to_disk_folder_gives_its_splits_items_and_class_labels(saved, tmp_path):
    cfg = config(saved, tmp_path)
    train, val, test = (build_dataset(cfg, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (8, 4, 4)
    assert train.captions[:3] == ["a coat number 0", "a dress number 0", "a skirt number 1"]
    assert train.item_ids == [0, 0, 1, 1, 2, 2, 3, 3]  # the product column: two photos per item
    assert train.categories == GARMENTS and train.category_ids[:4] == [0, 1, 2, 0]
    assert test.category_prompts() == [f"a photo of a {g}" for g in GARMENTS]
    image, reason = train._load(train.sources[3])
    assert reason is None and image.size == (20, 28) and image.mode == "RGB"


def test_bad_images_inside_a_good_split_are_skipped_and_recorded(saved, tmp_path):
    datamodule = FashionDataModule(config(saved, tmp_path))
    cfg = model_cfg()
    _, tokenizer, processor = load_clip(cfg, captions_for_tokenizer=datamodule.all_captions())
    datamodule.tokenizer, datamodule.image_processor = tokenizer, processor
    datamodule.setup("validate")
    batches = [datamodule.on_before_batch_transfer(b, 0) for b in datamodule.val_dataloader()]  # as Lightning
    assert sum(len(b["caption_ids"]) for b in batches) == 2
    count, skipped = datamodule.skipped_files()
    assert count == 2
    assert [(where.rsplit(" ", 1)[-1], reason.split(" (")[0]) for where, reason in skipped] == [
        ("1", "not an image"),
        ("2", "no image in this row"),
    ]
    assert skipped[0][0].endswith("saved[validation] row 1")


def test_parquet_files_by_split_with_val_held_out_of_train_by_item(parquet, tmp_path):
    cfg = config(parquet, tmp_path)
    train, val, test = (build_dataset(cfg, s) for s in ("train", "val", "test"))
    # each row holds two captions: one sample each
    assert len(train) + len(val) == 16 and len(test) == 8
    assert test.captions[:2] == ["a coat number 100", "A COAT NUMBER 100"]
    items = lambda d: {c.rsplit(" ", 1)[-1] for c in d.captions}  # noqa: E731
    assert items(train).isdisjoint(items(val)) and len(items(val)) == 1  # 1 of the 4 products
    assert [build_dataset(cfg, "val").captions] == [val.captions]  # seeded


def test_a_single_parquet_file_is_the_train_split(parquet, tmp_path):
    cfg = config(parquet / "data" / "train-00000-of-00001.parquet", tmp_path)
    assert len(build_dataset(cfg, "train")) + len(build_dataset(cfg, "val")) == 16
    with pytest.raises(TrendgenError, match="has no split 'test'"):
        build_dataset(cfg, "test")


def test_a_malformed_row_or_a_missing_column_is_refused_with_where_it_is(tmp_path):
    folder = tmp_path / "broken"
    broken = table(4)
    rows = broken.to_dict()
    rows["caption"][2] = "   "
    Dataset.from_dict(rows, features=broken.features).save_to_disk(str(folder))
    with pytest.raises(TrendgenError, match=r"broken\[train\] row 2: 'caption' must be a caption"):
        build_dataset(config(folder, tmp_path), "train")
    with pytest.raises(TrendgenError, match=r"no column 'title' \(data\.hf\.text_column\); it has image, "):
        build_dataset(config(folder, tmp_path, text_column="title"), "train")
    with pytest.raises(TrendgenError, match="could not open the dataset"):
        build_dataset(config(tmp_path / "nowhere", tmp_path), "train")


def _streamed(parquet: Path, tmp_path: Path, workers: int = 0) -> FashionDataModule:
    cfg = config(parquet, tmp_path, streaming=True, eval_rows=2, shuffle_buffer=4)
    cfg.num_workers = workers
    datamodule = FashionDataModule(cfg)
    model, tokenizer, processor = load_clip(model_cfg(), captions_for_tokenizer=datamodule.all_captions())
    datamodule.tokenizer, datamodule.image_processor = tokenizer, processor
    datamodule.max_length = model.config.text_config.max_position_embeddings
    return datamodule


def test_streaming_trains_on_the_rest_of_train_and_holds_the_first_rows_for_val(parquet, tmp_path):
    datamodule = _streamed(parquet, tmp_path, workers=2)
    val = datamodule.dataset("val")
    assert val.captions == ["a coat number 0", "A COAT NUMBER 0", "a dress number 0", "A DRESS NUMBER 0"]
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())  # 2 workers: datasets gives the one file to one of them
    n = sum(len(b["caption_ids"]) for b in batches)
    assert n == 12  # 6 rows after the 2 held for val, 2 captions each; batches of 4, nothing lost
    ids = torch.cat([b["caption_ids"] for b in batches])
    assert ids.unique().numel() == 12  # distinct captions, distinct ids
    tokens = torch.cat([b["input_ids"] for b in batches])
    again = torch.cat([b["caption_ids"] for b in _streamed(parquet, tmp_path).train_dataloader()])
    assert sorted(again.tolist()) == sorted(ids.tolist())  # the ids are the captions', not the order's
    assert tokens.shape[1] == datamodule.max_length


def test_a_streamed_run_fits_with_max_steps(parquet, tmp_path):
    datamodule = _streamed(parquet, tmp_path)
    cfg = model_cfg()
    pl.seed_everything(0)
    model, tokenizer, processor = load_clip(cfg, captions_for_tokenizer=datamodule.all_captions())
    datamodule.tokenizer, datamodule.image_processor = tokenizer, processor
    module = ClipFineTuner(model, tokenizer, cfg, datamodule.category_prompts)
    fit = trainer(max_steps=2, num_sanity_val_steps=0, val_check_interval=2)
    fit.fit(module, datamodule=datamodule)
    assert fit.global_step == 2
    assert fit.callback_metrics["val/n_images"] == 4  # the two held-out rows, two captions each


def test_a_streamed_split_takes_batch_augmentation_and_refuses_worker_augmentation(parquet, tmp_path):
    datamodule = _streamed(parquet, tmp_path)
    datamodule.cfg.augment.enabled = True
    datamodule.setup("fit")
    with pytest.raises(TrendgenError, match=r"where=workers does not reach a streamed split"):
        datamodule.train_dataloader()
    datamodule.cfg.augment.where = "batch"
    assert sum(len(b["caption_ids"]) for b in datamodule.train_dataloader()) == 12
