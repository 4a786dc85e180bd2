"""Multi-field data: each item's field texts reach the batch as caption-table rows, and bad settings are one
line."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import transformers

from trendgen.config import SyntheticDataConfig
from trendgen.data.base import CaptionDataset, ConcatCaptionDataset
from trendgen.data.datamodule import FashionDataModule
from trendgen.data.fields import check_fields, field_weights
from trendgen.errors import TrendgenError
from trendgen.model.tokenizer import train_caption_tokenizer


def _module(**overrides: Any) -> FashionDataModule:
    base = {"size": 24, "val_size": 8, "test_size": 4, "image_px": 24, "batch_size": 8, "num_workers": 0}
    cfg = SyntheticDataConfig(
        name="synthetic", templates=["a {color} {pattern} {garment}"], **{**base, **overrides}
    )
    module = FashionDataModule(cfg, max_length=12)
    module.tokenizer = train_caption_tokenizer(module.all_captions(), vocab_size=400)
    module.image_processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    return module


def test_each_field_text_reaches_the_batch_as_a_table_row_equal_texts_equal_rows():
    module = _module(fields={"color": 1.0, "pattern": 0.5})
    module.setup("fit")
    train, table = module.dataset("train"), module.table
    batch = next(iter(module.train_dataloader()))
    assert set(batch["fields"]) == {"color", "pattern"}  # training carries the fields it trains
    for name, part in batch["fields"].items():
        for row, index in enumerate(batch["index"].tolist()):
            assert table.captions[int(part["caption_ids"][row])] == train.fields[name][index]
            assert torch.equal(part["input_ids"][row], table.input_ids[part["caption_ids"][row]])
        same = part["caption_ids"][:, None] == part["caption_ids"][None, :]
        texts = [train.fields[name][i] for i in batch["index"].tolist()]
        assert same.tolist() == [[a == b for b in texts] for a in texts]
    for index in batch["index"].tolist():  # the caption holds the item's own fields
        assert train.fields["color"][index] in train.captions[index]
    val = next(iter(module.val_dataloader()))
    assert set(val["fields"]) == {"garment", "color", "pattern"}  # evaluation carries every field


def test_replayed_rows_have_no_field_text_and_are_not_counted_missing():
    module = _module(fields={"color": 1.0})
    other = CaptionDataset(
        name="other", split="train", sources=[0, 1], captions=["x", "y"], item_ids=[0, 1],
        category_ids=[0, 0], categories=["x"], category_template="{category}", load=lambda s: (None, None),
    )  # fmt: skip
    mixed = ConcatCaptionDataset([module.dataset("train"), other])
    check_fields(mixed, ["color"])  # the other part's rows train the caption term only
    assert mixed.fields["color"][-2:] == ["", ""] and all(mixed.fields["color"][:-2])


def test_without_data_fields_training_batches_carry_none():
    module = _module()
    module.setup("fit")
    assert "fields" not in next(iter(module.train_dataloader()))


def test_an_unknown_field_and_a_missing_value_are_one_line():
    with pytest.raises(
        TrendgenError,
        match=r"data\.fields\.sleeve: the synthetic train split has no field 'sleeve' \(its fields: garment, "
        r"color, pattern\)",
    ):
        _module(fields={"sleeve": 1.0}).setup("fit")
    dataset = CaptionDataset(
        name="shop", split="train", sources=[0, 1, 2], captions=["a", "b", "c"], item_ids=[0, 1, 2],
        category_ids=[0, 0, 0], categories=["x"], category_template="{category}", load=lambda s: (None, None),
        fields={"color": ["red", "", "blue"]},
    )  # fmt: skip
    with pytest.raises(TrendgenError, match=r"data\.fields\.color: 1 of 3 train items have no color"):
        check_fields(dataset, ["color"])
    with pytest.raises(TrendgenError, match="weights must be >= 0"):
        field_weights({"color": -1.0})
    with pytest.raises(TrendgenError, match="give a mapping of field to weight"):
        field_weights(["color"])
    assert field_weights({"color": 2.0, "caption": 0.0}) == {"color": 2.0}
    assert field_weights({}) == {}
