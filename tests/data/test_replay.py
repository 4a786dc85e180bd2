"""replay=...: a seeded share of Fashion-MNIST's train split mixed into the synthetic training split, through
the composed `conf/replay/` group, the datamodule's loaders and one short trendgen-train run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import transformers
from helpers.apps import run_app
from helpers.scale import TINY_TRAIN, VENV_BIN, job_env
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image
from test_data_hf import config as hf_config
from test_data_hf import table as hf_table

from trendgen.config import CONF_DIR, FolderDataConfig, ReplayConfig, register_configs
from trendgen.data import CaptionDataset, build_dataset
from trendgen.data.base import ConcatCaptionDataset
from trendgen.data.datamodule import FashionDataModule
from trendgen.data.fashion_mnist import CLASSES
from trendgen.errors import TrendgenError
from trendgen.model.tokenizer import train_caption_tokenizer

torch.set_num_threads(1)
register_configs()
N_MAIN = 48  # synthetic training rows; with batches of 16 each mix below fills whole batches
SMALL = [
    f"data.size={N_MAIN}", "data.val_size=16", "data.test_size=8", "data.image_px=24", "data.batch_size=16",
    "data.num_workers=0",
]  # fmt: skip
FM_CAPTIONS = {f"a photo of a {name}" for name in CLASSES}


def compose_train(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def replaying(root: Path, *overrides: str) -> DictConfig:
    return compose_train(*SMALL, "replay=fashion_mnist", f"replay.data.root={root}", *overrides)


def module_of(cfg: DictConfig) -> FashionDataModule:
    return FashionDataModule(cfg.data, replay_cfg=cfg.replay)


def ready(module: FashionDataModule) -> FashionDataModule:
    """A tokenizer learnt from the module's captions and a 32 px processor, as a from-scratch CLIP has."""
    module.tokenizer = train_caption_tokenizer(module.all_captions(), vocab_size=400)
    module.image_processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    module.max_length = 16
    return module


def test_the_replay_group_composes_and_is_off_by_default() -> None:
    off = compose_train().replay
    assert off.data is None and off.share == 0.0
    on = compose_train("replay=fashion_mnist", "data=synthetic").replay
    fm_data = compose_train("data=fashion_mnist").data
    assert (
        on.share == 0.1 and on.data.name == "fashion_mnist"
    )  # a full data node: conf/data/fashion_mnist.yaml
    assert (on.data.root, on.data.templates, on.data.category_template) == (
        fm_data.root, fm_data.templates, fm_data.category_template,
    )  # fmt: skip
    assert (Path(CONF_DIR) / "replay" / "fashion_mnist.yaml").is_file()  # the packaged tree has the group


def test_replay_off_leaves_the_train_split_as_before() -> None:
    cfg = compose_train(*SMALL)
    before = build_dataset(cfg.data, "train")
    train = FashionDataModule(cfg.data, replay_cfg=cfg.replay).dataset("train")
    assert type(train) is CaptionDataset
    assert (train.sources, train.captions, train.item_ids, train.category_ids) == (
        before.sources, before.captions, before.item_ids, before.category_ids,
    )  # fmt: skip


@pytest.mark.parametrize(("share", "n_replay"), [(0.5, 48), (0.25, 16)])  # round(48 * s / (1 - s))
def test_each_epoch_mixes_in_the_share_of_fashion_mnist_rows(fashion_mnist_root, share, n_replay) -> None:
    module = ready(module_of(replaying(fashion_mnist_root, f"replay.share={share}")))
    module.setup("fit")
    batches = list(module.train_dataloader())
    items = torch.cat([b["item_ids"] for b in batches])
    categories = torch.cat([b["category_ids"] for b in batches]).tolist()
    captions = [module.table.captions[i] for b in batches for i in b["caption_ids"].tolist()]
    replayed = items >= N_MAIN  # replay item ids are offset past the synthetic ones
    assert (
        len(items) == N_MAIN + n_replay and int(replayed.sum()) == n_replay
    )  # one whole epoch, nothing dropped
    assert sorted(items[~replayed].tolist()) == list(range(N_MAIN)) and items.unique().numel() == len(items)
    n_classes = len(module.categories)
    assert module.categories == build_dataset(module.cfg, "val").categories  # zero-shot: synthetic's garments
    for caption, category, replay in zip(captions, categories, replayed.tolist(), strict=True):
        if replay:  # a Fashion-MNIST caption of the row's own class, past the synthetic category ids
            assert caption == f"a photo of a {CLASSES[category - n_classes]}"
        else:
            assert caption not in FM_CAPTIONS and 0 <= category < n_classes
    train = module.dataset("train")
    sizes = {train[i]["image"].size for i in range(len(train)) if train.part_of(i) == 1}
    assert sizes == {(28, 28)}  # replay rows decode Fashion-MNIST images
    assert train.describe(len(train) - 1).startswith("fashion_mnist/train/")
    # validation and test: the synthetic splits alone
    for split, loader, n in (("val", module.val_dataloader(), 16), ("test", module.test_dataloader(), 8)):
        assert type(module.dataset(split)) is CaptionDataset
        rows = [module.table.captions[i] for b in loader for i in b["caption_ids"].tolist()]
        assert len(rows) == n and not FM_CAPTIONS & set(rows), split


def test_the_replayed_subset_is_fixed_by_the_seed_and_capped(fashion_mnist_root) -> None:
    def replayed(*overrides: str) -> list:
        train = module_of(replaying(fashion_mnist_root, *overrides)).dataset("train")
        assert isinstance(train, ConcatCaptionDataset)
        return [source for i, source in enumerate(train.sources) if train.part_of(i) == 1]

    first = replayed("replay.share=0.5")
    assert len(first) == N_MAIN and replayed("replay.share=0.5") == first
    assert replayed("replay.share=0.5", "replay.data.seed=1") != first
    assert len(replayed()) == 5  # the default share, 0.1: round(48 * 0.1 / 0.9)
    assert len(replayed("replay.share=0.9", "replay.data.limit=100")) == 100  # round(48 * 9) capped at 100


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["replay.share=1.0"], r"replay.share=1.0 must be in \[0, 1\)"),
        (["replay.share=-0.1"], r"replay.share=-0.1 must be in \[0, 1\)"),
        (["replay.data=null"], "replay.share=0.1 needs a replayed dataset, e.g. replay=fashion_mnist"),
        (["replay.data.limit=0"], "replay.data: dataset 'fashion_mnist' has no samples in split 'train'"),
    ],
)
def test_bad_replay_settings_are_refused_clearly(fashion_mnist_root, overrides, message) -> None:
    cfg = replaying(fashion_mnist_root, *overrides)
    with pytest.raises(TrendgenError, match=message):
        module_of(cfg).dataset("train")


def test_a_streamed_train_split_refuses_replay(fashion_mnist_root, tmp_path) -> None:
    hf_table(8).to_parquet(str(tmp_path / "train.parquet"))
    streamed = hf_config(tmp_path / "train.parquet", tmp_path, streaming=True, eval_rows=2)
    replay = ReplayConfig(data=replaying(fashion_mnist_root).replay.data, share=0.5)
    with pytest.raises(TrendgenError, match="replay is not supported with a streamed training split"):
        FashionDataModule(streamed, replay_cfg=replay).dataset("train")


def test_bad_replayed_files_are_skipped_and_recorded(tmp_path) -> None:
    """A replayed folder: a missing file is dropped when read, an empty one when decoded; both recorded."""
    for i in range(3):
        Image.new("RGB", (20, 20), (80 * i, 90, 200)).save(tmp_path / f"r{i}.png")
    (tmp_path / "r1.png").write_bytes(b"")
    lines = [f"r{i}.png,a replayed coat" for i in range(4)]  # r3.png does not exist
    (tmp_path / "captions.csv").write_text("path,caption\n" + "\n".join(lines) + "\n")
    main = compose_train(*SMALL, "data.batch_size=17").data  # 48 + the 3 rows listed with a file: 3 batches
    replay = ReplayConfig(data=FolderDataConfig(name="folder", root=str(tmp_path), index=None), share=0.9)
    module = ready(FashionDataModule(main, replay_cfg=replay))
    module.setup("fit")
    count, records = module.skipped_files()
    assert count == 1 and records[0][0] == str(tmp_path / "r3.png") and "missing file" in records[0][1]
    batches = list(module.train_dataloader())
    skipped = [record for b in batches for record in b["skipped"]]
    assert [(path, reason.split(" (")[0]) for path, reason in skipped] == [
        (str(tmp_path / "r1.png"), "empty file")
    ]
    assert sum(len(b["item_ids"]) for b in batches) == N_MAIN + 2


def test_a_short_training_run_with_replay_completes(fashion_mnist_root, tmp_path) -> None:
    run_dir = tmp_path / "run"
    overrides = [
        *TINY_TRAIN, "data.test_size=8", "data.image_px=24", "trainer.max_steps=4", "logger=none",
        "replay=fashion_mnist", "replay.share=0.5", f"replay.data.root={fashion_mnist_root}",
        "replay.data.limit=500",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    proc = run_app(
        [VENV_BIN / "trendgen-train", *overrides],
        cwd=tmp_path,
        env=job_env(TRENDGEN_ROOT=str(tmp_path)),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "replay: 48 rows of fashion_mnist/train (of 500) mixed into the 48 training rows" in (
        proc.stdout + proc.stderr
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 4 and metrics["val/n_images"] == 16  # validation: synthetic alone
    assert (run_dir / "model" / "model.safetensors").is_file()


def test_a_bad_share_ends_the_cli_in_one_line(tmp_path) -> None:
    proc = subprocess.run(
        [
            str(VENV_BIN / "trendgen-train"),
            "replay=fashion_mnist",
            "replay.share=1.5",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=tmp_path,
        env=job_env(TRENDGEN_ROOT=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("trendgen: error: replay.share=1.5 must be in [0, 1)")
    )
