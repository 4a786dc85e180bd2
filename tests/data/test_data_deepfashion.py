"""DeepFashion in both annotation layouts, from small fixture files written in the real formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from trendgen.config import DeepFashionDataConfig
from trendgen.data import build_dataset
from trendgen.errors import TrendgenError

TEMPLATES = ["a photo of a {attributes} {category}"]
CATEGORIES = [("Blouse", 1), ("Cardigan", 1), ("Jeans", 2), ("Dress", 3)]
COARSE_ATTRIBUTES = [
    ("a-line", 3),
    ("abstract chevron", 1),
    ("floral print", 1),
    ("long sleeve", 2),
    ("denim", 4),
]
# (image name, split, 1-indexed category, coarse attribute labels)
IMAGES = [
    ("img/Sheer_Pleated-Front_Blouse/img_00000001.jpg", "train", 1, [-1, 1, 1, 0, -1]),
    ("img/Sheer_Pleated-Front_Blouse/img_00000002.jpg", "train", 1, [-1, -1, 1, -1, 0]),
    ("img/Classic_Denim_Jeans/img_00000003.jpg", "train", 3, [0, -1, -1, -1, 1]),
    ("img/Knit_Cardigan/img_00000004.jpg", "val", 2, [-1, -1, -1, 1, -1]),
    ("img/Floral_Maxi_Dress/img_00000005.jpg", "test", 4, [1, -1, 1, 1, -1]),
    ("img/Floral_Maxi_Dress/img_00000006.jpg", "test", 4, [-1, -1, -1, -1, -1]),
]
FINE_ATTRIBUTES = [("floral", 1), ("striped", 1), ("long_sleeve", 2), ("no_dress", 3), ("denim", 5)]


def _listing(path: Path, header: str, rows: list[str], count: int | None = None) -> None:
    """A DeepFashion list file: count line, header line, rows padded with runs of spaces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [str(len(rows) if count is None else count), header, *rows]
    path.write_text("\n".join(lines) + "\n")


def _named(names: list[tuple[str, int]]) -> list[str]:
    return [f"{name:<30}{kind}" for name, kind in names]


def write_images(base: Path) -> None:
    for name, *_ in IMAGES:
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (30, 40), (90, 40, 160)).save(base / name)


def write_coarse(root: Path, anno: str = "Anno") -> None:
    _listing(root / anno / "list_category_cloth.txt", "category_name  category_type", _named(CATEGORIES))
    _listing(root / anno / "list_attr_cloth.txt", "attribute_name  attribute_type", _named(COARSE_ATTRIBUTES))
    _listing(
        root / anno / "list_category_img.txt",
        "image_name  category_label",
        [f"{name:<60}{category}" for name, _, category, _ in IMAGES],
    )
    _listing(
        root / anno / "list_attr_img.txt",
        "image_name  attribute_labels",
        [f"{name:<58}" + " ".join(f"{v:>2}" for v in labels) for name, _, _, labels in IMAGES],
    )
    _listing(
        root / "Eval" / "list_eval_partition.txt",
        "image_name  evaluation_status",
        [f"{name:<60}{split}" for name, split, *_ in IMAGES],
    )


def write_fine(root: Path) -> None:
    fine = root / "Anno_fine"
    _listing(fine / "list_category_cloth.txt", "category_name  category_type", _named(CATEGORIES))
    _listing(fine / "list_attr_cloth.txt", "attribute_name  attribute_type", _named(FINE_ATTRIBUTES))
    for split in ("train", "val", "test"):
        rows = [(name, category, labels) for name, s, category, labels in IMAGES if s == split]
        (fine / f"{split}.txt").write_text("".join(f"{name}\n" for name, _, _ in rows))
        (fine / f"{split}_cate.txt").write_text("".join(f"{category}\n" for _, category, _ in rows))
        # Fine labels are binary; reuse the coarse pattern with -1 read as 0.
        attrs = "".join(" ".join(str(max(v, 0)) for v in labels) + "\n" for _, _, labels in rows)
        (fine / f"{split}_attr.txt").write_text(attrs)


def _cfg(root: Path, annotations: str, **overrides) -> DeepFashionDataConfig:
    return DeepFashionDataConfig(
        name="deepfashion", root=str(root), annotations=annotations, templates=list(TEMPLATES), **overrides
    )


@pytest.mark.parametrize("anno", ["Anno", "Anno_coarse"])
def test_coarse_layout_with_img_under_Img(tmp_path: Path, anno: str) -> None:
    write_coarse(tmp_path, anno)
    write_images(tmp_path / "Img")
    train = build_dataset(_cfg(tmp_path, "coarse", max_attributes=3), "train")
    assert len(train) == 3
    assert train.categories == ["blouse", "cardigan", "jeans", "dress"]
    assert train.category_ids == [0, 0, 2]  # 1-indexed labels, 0-indexed ids
    # Multi-word attribute names survive; only label 1 counts (not -1, not 0).
    assert train.captions == [
        "a photo of a abstract chevron floral print blouse",
        "a photo of a floral print blouse",
        "a photo of a denim jeans",
    ]
    assert train.item_ids[0] == train.item_ids[1] != train.item_ids[2]
    assert train.describe(0) == str(tmp_path / "Img" / IMAGES[0][0])
    sample = train[0]
    assert sample["reason"] is None and sample["image"].mode == "RGB" and sample["image"].size == (30, 40)

    val, test = (
        build_dataset(_cfg(tmp_path, "coarse"), "val"),
        build_dataset(_cfg(tmp_path, "coarse"), "test"),
    )
    assert val.captions == ["a photo of a long sleeve cardigan"]
    assert test.captions[1] == "a photo of a dress"  # no positive attribute: no double space
    # multi-field training's fields: the category, the caption's attributes ("" where none is set)
    assert train.fields["category"] == ["blouse", "blouse", "jeans"]
    assert train.fields["attributes"][1:] == ["floral print", "denim"] and test.fields["attributes"][1] == ""
    assert test.item_ids[0] == test.item_ids[1]
    # Item ids are stable across splits: the <Item> folders numbered in sorted order.
    items = sorted({name.split("/")[1] for name, *_ in IMAGES})
    assert train.item_ids[2] == items.index("Classic_Denim_Jeans")
    assert test.item_ids[0] == items.index("Floral_Maxi_Dress")

    capped = build_dataset(_cfg(tmp_path, "coarse", max_attributes=1), "test")
    assert capped.captions[0] == "a photo of a a-line dress"


def test_fine_layout_with_img_under_root(tmp_path: Path) -> None:
    write_fine(tmp_path)
    write_images(tmp_path)
    train = build_dataset(_cfg(tmp_path, "fine"), "train")
    assert train.captions == [
        "a photo of a striped long sleeve blouse",
        "a photo of a long sleeve blouse",
        "a photo of a denim jeans",
    ]
    assert train.category_ids == [0, 0, 2]
    test = build_dataset(_cfg(tmp_path, "fine"), "test")
    # "no_dress" names an absence: it is not written into the caption; underscores become spaces.
    assert test.captions[0] == "a photo of a floral long sleeve dress"
    assert test[0]["image"].mode == "RGB"
    assert test.category_prompts()[3] == "a photo of a dress"


def test_short_partition_file_is_refused_with_file_and_line(tmp_path: Path) -> None:
    write_coarse(tmp_path)
    write_images(tmp_path)
    partition = tmp_path / "Eval" / "list_eval_partition.txt"
    _listing(
        partition,
        "image_name  evaluation_status",
        [f"{name}   {split}" for name, split, *_ in IMAGES[:-1]],
        count=len(IMAGES),
    )
    with pytest.raises(
        TrendgenError, match=rf"list_eval_partition\.txt:{len(IMAGES) + 1}: file ends after 5 rows"
    ):
        build_dataset(_cfg(tmp_path, "coarse"), "train")


def test_rows_beyond_the_count_line_are_refused(tmp_path: Path) -> None:
    write_coarse(tmp_path)
    write_images(tmp_path)
    rows = [f"{name:<60}{category}" for name, _, category, _ in IMAGES]
    _listing(tmp_path / "Anno" / "list_category_img.txt", "image_name  category_label", rows, count=4)
    with pytest.raises(
        TrendgenError, match=r"list_category_img\.txt:7: more rows than the 4 announced on line 1"
    ):
        build_dataset(_cfg(tmp_path, "coarse"), "train")


def test_bad_attribute_row_is_refused_with_file_and_line(tmp_path: Path) -> None:
    write_coarse(tmp_path)
    write_images(tmp_path)
    path = tmp_path / "Anno" / "list_attr_img.txt"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].rsplit(" ", 1)[0]  # the third image loses its last label
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TrendgenError, match=r"list_attr_img\.txt:5: expected 5 attribute labels, found 4"):
        build_dataset(_cfg(tmp_path, "coarse"), "train")


def test_fine_split_file_out_of_step_is_refused(tmp_path: Path) -> None:
    write_fine(tmp_path)
    write_images(tmp_path)
    cate = tmp_path / "Anno_fine" / "train_cate.txt"
    cate.write_text("1\n1\n")  # train.txt lists 3 images
    with pytest.raises(TrendgenError, match=r"train_cate\.txt:3: missing row for line 3 of .*train\.txt"):
        build_dataset(_cfg(tmp_path, "fine"), "train")
    cate.write_text("1\n1\n3\n2\n")
    with pytest.raises(TrendgenError, match=r"train_cate\.txt:4: extra row"):
        build_dataset(_cfg(tmp_path, "fine"), "train")
    cate.write_text("1\n9\n3\n")
    with pytest.raises(TrendgenError, match=r"train_cate\.txt:2: category label '9' is not in 1\.\.4"):
        build_dataset(_cfg(tmp_path, "fine"), "train")


def test_missing_pieces_are_clear_errors(tmp_path: Path) -> None:
    write_coarse(tmp_path)
    with pytest.raises(TrendgenError, match=r"img/ or .*Img/img/"):
        build_dataset(_cfg(tmp_path, "coarse"), "train")
    write_images(tmp_path)
    with pytest.raises(TrendgenError, match="missing DeepFashion fine annotation file"):
        build_dataset(_cfg(tmp_path, "fine"), "train")
    with pytest.raises(TrendgenError, match="coarse or fine"):
        build_dataset(_cfg(tmp_path, "medium"), "train")
    (tmp_path / "Img" / IMAGES[0][0]).unlink(missing_ok=True)
    (tmp_path / IMAGES[0][0]).unlink()
    train = build_dataset(_cfg(tmp_path, "coarse"), "train")
    image, reason = train[0]["image"], train[0]["reason"]
    assert image is None and "cannot read file" in reason  # a missing image is a skip, not a crash
