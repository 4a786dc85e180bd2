"""DeepFashion In-shop from fixture files in the release's layout, and query→gallery recall by item id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from helpers.clip import model_cfg, trainer
from omegaconf import OmegaConf
from PIL import Image

from trendgen.config import InShopDataConfig
from trendgen.data import build_dataset
from trendgen.data.datamodule import FashionDataModule
from trendgen.errors import TrendgenError
from trendgen.model.build import load_clip
from trendgen.model.image_retrieval import QueryGalleryRecall
from trendgen.model.module import ClipFineTuner

torch.set_num_threads(1)

# (image name, item, status); an item's images share one folder, as in the release
ROWS = [
    ("img/WOMEN/Dresses/id_00000001/01_1_front.jpg", "id_00000001", "train"),
    ("img/WOMEN/Dresses/id_00000001/01_2_side.jpg", "id_00000001", "train"),
    ("img/MEN/Tees_Tanks/id_00000002/01_1_front.jpg", "id_00000002", "train"),
    ("img/MEN/Tees_Tanks/id_00000002/02_3_back.jpg", "id_00000002", "train"),
    ("img/WOMEN/Blouses_Shirts/id_00000003/01_1_front.jpg", "id_00000003", "train"),
    ("img/WOMEN/Blouses_Shirts/id_00000003/01_4_full.jpg", "id_00000003", "train"),
    ("img/MEN/Denim/id_00000004/01_1_front.jpg", "id_00000004", "train"),
    ("img/WOMEN/Dresses/id_00000005/02_1_front.jpg", "id_00000005", "query"),
    ("img/WOMEN/Dresses/id_00000005/02_2_side.jpg", "id_00000005", "gallery"),
    ("img/MEN/Denim/id_00000006/01_1_front.jpg", "id_00000006", "query"),
    ("img/MEN/Denim/id_00000006/01_2_side.jpg", "id_00000006", "gallery"),
    ("img/MEN/Denim/id_00000006/01_3_back.jpg", "id_00000006", "gallery"),
    ("img/MEN/Denim/id_00000006/01_7_additional.jpg", "id_00000006", "gallery"),  # not an image
    ("img/MEN/Denim/id_00000006/01_6_flat.jpg", "id_00000006", "gallery"),  # listed, never unpacked
]
DESCRIPTIONS = [
    {"item": "id_00000001", "color": "Navy", "description": ["A breezy dress in soft chiffon.", "Lined."]},
    {"item": "id_00000005", "color": "Cream-ivory", "description": []},
    {"item": "id_00000006", "color": "Indigo", "description": "  Slim   jeans with a low rise. "},
]
HEADER = "image_name item_id evaluation_status"


def write_partition(root: Path, rows: list[str], count: int | None = None) -> Path:
    path = root / "Eval" / "list_eval_partition.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([str(len(rows) if count is None else count), HEADER, *rows]) + "\n")
    return path


def write_inshop(root: Path) -> Path:
    for i, (name, _, _) in enumerate(ROWS):
        path = root / "img" / name.removeprefix("img/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("additional.jpg"):
            path.write_text("<html>not found</html>")
        elif not name.endswith("flat.jpg"):
            Image.new("RGB", (24, 32), (30 * i % 255, 90, 160)).save(path)
    (root / "Anno").mkdir(parents=True, exist_ok=True)
    (root / "Anno" / "list_description_inshop.json").write_text(json.dumps(DESCRIPTIONS))
    write_partition(root, [f"{name:<60}{item:<14}{status}" for name, item, status in ROWS])
    return root


def config(root: Path, **overrides) -> InShopDataConfig:
    cfg = OmegaConf.structured(InShopDataConfig)
    cfg.merge_with(
        {
            "name": "deepfashion_inshop",
            "root": str(root),
            "templates": ["{description}"],
            "category_template": "a photo of {category}",
            "batch_size": 4,
            "num_workers": 0,
            **overrides,
        }
    )
    return cfg


@pytest.fixture
def inshop(tmp_path) -> Path:
    return write_inshop(tmp_path / "inshop")


def test_the_test_split_is_query_and_gallery_with_captions_from_the_descriptions(inshop):
    test = build_dataset(config(inshop), "test")
    names = [str(Path(s).relative_to(inshop)) for s in test.sources]
    assert names == [name for name, _, status in ROWS[7:13]]  # the unpacked query and gallery rows
    assert test.is_query == [True, False, True, False, False, False]
    assert test.item_ids == [5, 5, 6, 6, 6, 6]
    assert test.categories == ["blouses and shirts", "denim", "dresses", "tees and tanks"]
    assert [test.categories[c] for c in test.category_ids[:3]] == ["dresses", "dresses", "denim"]
    # item 5 has a colour but no sentence: the look from its path; item 6's sentence, spaces tidied
    assert test.captions[0] == "cream-ivory women's dresses"
    assert test.captions[2] == "Slim jeans with a low rise."
    assert test.category_prompts()[0] == "a photo of blouses and shirts"
    missing = inshop / "img/MEN/Denim/id_00000006/01_6_flat.jpg"
    assert test.skipped == [(str(missing), "missing file (listed on list_eval_partition.txt line 16)")]


def test_val_holds_out_whole_train_items_with_one_query_each(inshop):
    cfg = config(inshop, val_fraction=0.5, templates=["a photo of {color} {gender}'s {category}"])
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert train.is_query is None
    assert set(train.item_ids).isdisjoint(val.item_ids)
    assert set(train.item_ids) | set(val.item_ids) == {1, 2, 3, 4}
    assert len(set(val.item_ids)) == 2 and len(train) + len(val) == 7
    for item in set(val.item_ids):
        flags = [q for q, i in zip(val.is_query, val.item_ids, strict=True) if i == item]
        assert sum(flags) == (1 if len(flags) > 1 else 0)  # a lone image stays in the gallery
    captions = dict(zip(train.item_ids + val.item_ids, train.captions + val.captions, strict=True))
    assert captions[1] == "a photo of navy women's dresses"  # the release's colour, lowercased
    assert captions[2] == "a photo of men's tees and tanks"  # no description entry: no colour
    assert build_dataset(cfg, "val").item_ids == val.item_ids  # seeded


def test_a_release_without_descriptions_captions_from_the_paths(inshop):
    (inshop / "Anno" / "list_description_inshop.json").unlink()
    test = build_dataset(config(inshop), "test")
    assert test.captions[2] == "men's denim"


@pytest.mark.parametrize(
    ("rows", "count", "message"),
    [
        (["img/WOMEN/Dresses/id_00000001/a.jpg id_00000001"], None, r"partition\.txt:3: expected 3"),
        (["img/WOMEN/Dresses/id_00000001/a.jpg id_00000001 test"], None, ":3: evaluation status 'test'"),
        (["img/WOMEN/Dresses/id_00000001/a.jpg 00000001 train"], None, ":3: item id '00000001'"),
        (["photos/a.jpg id_00000001 train"], None, ":3: image name 'photos/a.jpg'"),
        (["img/WOMEN/Dresses/id_00000001/a.jpg id_00000001 train"], 2, ":3: file ends after 1 rows"),
    ],
)
def test_a_malformed_partition_row_is_refused_with_its_file_and_line(inshop, rows, count, message):
    write_partition(inshop, rows, count)
    with pytest.raises(TrendgenError, match=message):
        build_dataset(config(inshop), "train")


def test_malformed_descriptions_are_refused_with_the_file(inshop):
    path = inshop / "Anno" / "list_description_inshop.json"
    path.write_text('[{"item": "id_00000001",\n "color": }]')
    with pytest.raises(TrendgenError, match=r"list_description_inshop\.json:2: not valid JSON"):
        build_dataset(config(inshop), "test")
    path.write_text(json.dumps([{"color": "red"}]))
    with pytest.raises(TrendgenError, match='entry 0 has no "item" id'):
        build_dataset(config(inshop), "test")


def test_query_gallery_recall_counts_a_query_hit_when_its_item_is_in_the_top_k():
    metric = QueryGalleryRecall(ks=(1, 2))
    # query 0 (item 7): nearest gallery image is item 8, the second item 7; query 1 (item 8): item 8 first
    embeds = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.8, -0.6], [0.1, 1.0]])
    items = torch.tensor([7, 8, 8, 7, 8])
    queries = torch.tensor([True, True, False, False, False])
    metric.update(embeds, items, queries, torch.arange(5))
    metric.update(embeds[:1], items[:1], queries[:1], torch.tensor([0]))  # a DDP repeat: counted once
    scores = {k: float(v) for k, v in metric.compute().items()}
    assert scores == {"q2g_R@1": 0.5, "q2g_R@2": 1.0}


def test_validation_on_inshop_reports_query_to_gallery_recall_and_skips_the_bad_image(inshop):
    datamodule = FashionDataModule(config(inshop, split="test"))
    cfg = model_cfg()
    pl.seed_everything(0)
    model, tokenizer, processor = load_clip(cfg, captions_for_tokenizer=datamodule.all_captions())
    datamodule.tokenizer, datamodule.image_processor = tokenizer, processor
    datamodule.max_length = cfg.geometry.max_text_length
    module = ClipFineTuner(model, tokenizer, cfg, datamodule.category_prompts)
    fit = trainer()
    fit.test(module, datamodule=datamodule, verbose=False)
    scores = {k: float(v) for k, v in fit.callback_metrics.items()}
    assert scores["test/n_images"] == 5  # the HTML file is skipped at decode time
    assert {"test/q2g_R@1"} <= scores.keys() and "test/q2g_R@5" not in scores  # 3 gallery images
    assert 0.0 <= scores["test/q2g_R@1"] <= 1.0
    count, skipped = datamodule.skipped_files()
    assert count == 2 and {Path(p).name for p, _ in skipped} == {"01_6_flat.jpg", "01_7_additional.jpg"}
