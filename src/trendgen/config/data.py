"""Schemas of the data and replay groups (conf/data/, conf/replay/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from trendgen.config.ranges import ranged


@dataclass
class HfSourceConfig:
    """Where and how `data=hf` reads its Hugging Face `datasets` dataset (the `data.hf` node)."""

    path: str | None = None  # hub id, save_to_disk folder, folder of parquet files, or a parquet file/glob
    name: str | None = None  # the hub dataset's config name
    revision: str | None = None
    image_column: str = "image"  # an Image feature (or image bytes / file paths relative to data.root)
    text_column: str = "text"  # a caption, or a list of captions (one sample each)
    item_column: str | None = None  # None: every row is its own item
    category_column: str | None = None  # a ClassLabel or text column; None: no zero-shot categories
    splits: dict[str, str] = field(
        default_factory=lambda: {"train": "train", "val": "validation", "test": "test"}
    )  # trendgen split -> the dataset's split; a missing val split is held out of train (data.val_fraction)
    streaming: bool = False  # train streams (an IterableDataset; set trainer.max_steps); val/test are taken
    # streaming: rows taken for val and test (a missing val: the first of train)
    eval_rows: int = ranged(1000, low=1)
    shuffle_buffer: int = ranged(1000, low=1)  # streaming: shuffle buffer of the train stream
    cache_dir: str | None = None  # where `datasets` keeps what it downloads and converts


@dataclass
class AugmentConfig:
    """Random augmentation of the training split only (validation, test and trendgen-eval stay plain).

    Geometric by default; colour jitter is off (0) because colour is a label in fashion captions.
    """

    enabled: bool = False
    where: str = "workers"  # workers: per sample, in the DataLoader workers | batch: kornia, on the batch
    crop_scale: list[float] = field(default_factory=lambda: [0.8, 1.0])  # random resized crop: area share
    crop_ratio: list[float] = field(default_factory=lambda: [0.75, 1.3333333])  # and aspect ratio
    hflip: float = ranged(0.5, low=0, high=1)  # probability of a horizontal flip
    rotation: float = ranged(10.0, low=0)  # degrees, drawn uniformly from [-rotation, rotation]
    brightness: float = ranged(0.0, low=0)  # colour jitter strengths (0: off)
    contrast: float = ranged(0.0, low=0)
    saturation: float = ranged(0.0, low=0)
    hue: float = ranged(0.0, low=0, high=0.5)  # at most 0.5


CAPTION_FIELD = "caption"  # in `data.fields`: the term of each row's own caption


@dataclass
class DataConfig:
    """What every captioned fashion image dataset has (see conf/data/); each dataset's node extends it."""

    name: str = MISSING  # synthetic | deepfashion | deepfashion_inshop | fashion_mnist | folder | hf
    root: str | None = None
    split: str = "test"  # the split `trendgen-eval` scores
    train_split: str = "train"
    val_split: str = "val"
    batch_size: int = ranged(64, low=1)  # global batch: divided by the world size under DDP
    num_workers: int = ranged(2, low=0)
    pin_memory: bool = False
    limit: int | None = ranged(None, low=0)  # cap on items per split (quick runs)
    seed: int = 0
    templates: list[str] = field(default_factory=list)  # caption templates, e.g. "a photo of a {category}"
    category_template: str = "a photo of a {category}"  # zero-shot prompt per category
    # zero-shot prompt ensemble: class embedding = normalised mean over these (empty: category_template alone)
    zero_shot_templates: list[str] = field(default_factory=list)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # multi-field training: {field: weight} of each contrastive term beside the caption's ("caption": its
    # weight, 1 unless given), e.g. {garment: 1, color: 1, pattern: 1}; null: the caption alone
    fields: Any = None  # a {field: weight} mapping (typed Any: a command-line dict replaces null)


@dataclass
class SyntheticDataConfig(DataConfig):
    """`data=synthetic`: garments drawn procedurally, deterministic from the seed."""

    size: int = ranged(2000, low=1)
    val_size: int = ranged(400, low=0)
    test_size: int = ranged(400, low=0)
    image_px: int = ranged(64, low=8)
    planted_share: float = ranged(0.0, low=0, high=1)
    planted: dict[str, str] = field(default_factory=dict)  # {garment, color, pattern}


@dataclass
class DeepFashionDataConfig(DataConfig):
    """`data=deepfashion`: the Category and Attribute Prediction Benchmark."""

    annotations: str = "coarse"  # coarse | fine
    max_attributes: int = ranged(3, low=0)  # attributes named in one caption


@dataclass
class InShopDataConfig(DataConfig):
    """`data=deepfashion_inshop`: the In-shop Clothes Retrieval Benchmark."""

    # train items held out as val (the benchmark has no val split)
    val_fraction: float = ranged(0.05, low=0, high=1, open_low=True, open_high=True)


@dataclass
class FashionMnistDataConfig(DataConfig):
    """`data=fashion_mnist`: the IDX files of Debian's dataset-fashion-mnist."""


@dataclass
class FolderDataConfig(DataConfig):
    """`data=folder`: any images with a CSV or JSONL index."""

    index: str | None = None  # CSV or JSONL with path, caption (and optional item_id, category)


@dataclass
class HfDataConfig(DataConfig):
    """`data=hf`: any Hugging Face `datasets` dataset with an image and a text column."""

    # without a val split: train items held out as val
    val_fraction: float = ranged(0.05, low=0, high=1, open_low=True, open_high=True)
    hf: HfSourceConfig = field(default_factory=HfSourceConfig)


DATA_SCHEMAS: dict[str, type[DataConfig]] = {
    "synthetic": SyntheticDataConfig,
    "deepfashion": DeepFashionDataConfig,
    "deepfashion_inshop": InShopDataConfig,
    "fashion_mnist": FashionMnistDataConfig,
    "folder": FolderDataConfig,
    "hf": HfDataConfig,
}
"""Each dataset's node, stored as `data/schema_<name>` for its conf/data/<name>.yaml."""


@dataclass
class ReplayConfig:
    """Rehearsal: a seeded subset of another dataset's train split joins the training split (conf/replay/).

    Validation, test and the zero-shot categories stay those of `data`; only training sees the replayed rows.
    """

    data: Any = None  # the replayed dataset: a full data node, checked by its own schema; None: no replay
    # in [0, 1): the share of each training epoch's samples that are replayed rows
    share: float = ranged(0.0, low=0, high=1, open_high=True)
