"""Any image folder with a CSV or JSONL caption index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from trendgen.config import DataConfig, FolderDataConfig
from trendgen.data import build_dataset
from trendgen.errors import TrendgenError


def _images(root: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16 + i, 16), (10 * i, 100, 50)).save(root / name)


def _cfg(root: Path, index: Path | None) -> FolderDataConfig:
    return FolderDataConfig(name="folder", root=str(root), index=str(index) if index else None)


def test_csv_index_with_categories_items_and_splits(tmp_path: Path) -> None:
    _images(tmp_path, ["a.jpg", "shoes/b.png", "c.jpg", "d.jpg"])
    index = tmp_path / "captions.csv"
    index.write_text(
        "path,caption,item_id,category,split\n"
        'a.jpg,"a red dress, pleated",7,dress,train\n'
        "a.jpg,a pleated red dress,7,dress,train\n"
        "shoes/b.png,white sneakers,3,shoes,\n"
        "c.jpg,a denim jacket,5,jacket,val\n"
        "missing.jpg,a lost photo,9,dress,train\n"
    )
    train = build_dataset(_cfg(tmp_path, None), "train")  # captions.csv in the root is found by itself
    assert train.captions == ["a red dress, pleated", "a pleated red dress", "white sneakers"]
    assert train.item_ids == [7, 7, 3]
    assert train.categories == ["dress", "jacket", "shoes"]  # over the whole index: same ids in every split
    assert train.category_ids == [0, 0, 2]
    assert train.category_prompts() == ["a photo of a dress", "a photo of a jacket", "a photo of a shoes"]
    assert train.skipped == [(str(tmp_path / "missing.jpg"), "missing file (listed on captions.csv line 6)")]
    assert train.describe(2) == str(tmp_path / "shoes" / "b.png")
    assert train[2]["image"].size == (17, 16)
    val = build_dataset(_cfg(tmp_path, index), "val")
    assert val.captions == ["white sneakers", "a denim jacket"]  # a row with no split belongs to every split


def test_jsonl_index_without_optional_fields(tmp_path: Path) -> None:
    _images(tmp_path / "pics", ["x.jpg", "y.jpg"])
    index = tmp_path / "index.jsonl"
    rows = [
        {"path": str(tmp_path / "pics" / "x.jpg"), "caption": "a striped scarf"},
        {"path": "pics/y.jpg", "caption": "a wool coat"},
        {"path": "pics/x.jpg", "caption": "a long striped scarf"},
    ]
    index.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    data = build_dataset(_cfg(tmp_path, index), "test")
    assert data.captions == ["a striped scarf", "a wool coat", "a long striped scarf"]
    assert data.item_ids == [0, 1, 2]  # one item per distinct path string
    assert data.categories == [] and data.category_ids == [-1, -1, -1]
    assert all(data[i]["image"].mode == "RGB" for i in range(3))


@pytest.mark.parametrize(
    ("suffix", "content", "message"),
    [
        (
            ".csv",
            "file,text\na.jpg,a dress\n",
            r"captions\.csv:1: the header row lacks column\(s\) path, caption",
        ),
        (".csv", "path,caption\na.jpg,a dress\nb.jpg,\n", r"captions\.csv:3: empty or missing 'caption'"),
        (
            ".csv",
            "path,caption,item_id\na.jpg,a dress,x1\n",
            r"captions\.csv:2: item_id 'x1' is not an integer",
        ),
        (".csv", "path,caption\na.jpg,a dress,extra\n", r"captions\.csv:2: more fields than the header"),
        (".csv", "path,caption,category\na.jpg,a,dress\nb.jpg,b,\n", r"captions\.csv:3: 'category' is empty"),
        (
            ".jsonl",
            '{"path": "a.jpg", "caption": "a dress"}\n{"path": "b.jpg"\n',
            r"captions\.jsonl:2: not valid JSON",
        ),
        (".jsonl", '["a.jpg", "a dress"]\n', r"captions\.jsonl:1: expected a JSON object"),
        (".jsonl", "\n\n", r"captions\.jsonl has no rows"),
        (".txt", "a.jpg a dress\n", r"must be a \.csv or \.jsonl file"),
    ],
)
def test_invalid_index_names_file_and_line(tmp_path: Path, suffix: str, content: str, message: str) -> None:
    _images(tmp_path, ["a.jpg", "b.jpg"])
    index = tmp_path / f"captions{suffix}"
    index.write_text(content)
    with pytest.raises(TrendgenError, match=message):
        build_dataset(_cfg(tmp_path, index), "train")


def test_missing_folder_or_index(tmp_path: Path) -> None:
    with pytest.raises(TrendgenError, match="does not exist"):
        build_dataset(_cfg(tmp_path / "nowhere", None), "train")
    with pytest.raises(TrendgenError, match="no caption index"):
        build_dataset(_cfg(tmp_path, None), "train")
    with pytest.raises(TrendgenError, match=r"caption index .*other\.csv does not exist"):
        build_dataset(_cfg(tmp_path, tmp_path / "other.csv"), "train")
    (tmp_path / "captions.csv").write_text("path,caption\nnot-here.jpg,a ghost\n")
    with pytest.raises(TrendgenError, match="no samples in split 'train'"):
        build_dataset(_cfg(tmp_path, None), "train")


def test_unknown_dataset_name() -> None:
    with pytest.raises(TrendgenError, match=r"unknown dataset data\.name='imagenet'"):
        build_dataset(DataConfig(name="imagenet"), "train")
