"""Structured-config schemas for trendgen's own config groups, registered with Hydra's ConfigStore.

Each YAML file of a group lists its schema first in its defaults (`defaults: [schema, _self_]`), so a misspelt
or mistyped key in a YAML file or on the command line fails with a clear error before any work starts.
Groups that only instantiate third-party objects (trainer, logger, callbacks) stay free-form `_target_` nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class HfDataConfig:
    """A Hugging Face `datasets` dataset with an image and a text column (`data=hf`)."""

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
    eval_rows: int = 1000  # streaming: rows taken for val and test (a missing val: the first of train)
    shuffle_buffer: int = 1000  # streaming: shuffle buffer of the train stream
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
    hflip: float = 0.5  # probability of a horizontal flip
    rotation: float = 10.0  # degrees, drawn uniformly from [-rotation, rotation]
    brightness: float = 0.0  # colour jitter strengths (0: off)
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0  # at most 0.5


@dataclass
class DataConfig:
    """A captioned fashion image dataset (see conf/data/)."""

    name: str = MISSING  # synthetic | deepfashion | deepfashion_inshop | fashion_mnist | folder | hf
    root: str | None = None
    split: str = "test"  # the split `trendgen-eval` scores
    train_split: str = "train"
    val_split: str = "val"
    batch_size: int = 64  # global batch: divided by the world size under DDP
    num_workers: int = 2
    pin_memory: bool = False
    limit: int | None = None  # cap on items per split (quick runs)
    seed: int = 0
    templates: list[str] = field(default_factory=list)  # caption templates, e.g. "a photo of a {category}"
    category_template: str = "a photo of a {category}"  # zero-shot prompt per category
    # zero-shot prompt ensemble: class embedding = normalised mean over these (empty: category_template alone)
    zero_shot_templates: list[str] = field(default_factory=list)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # synthetic
    size: int = 2000
    val_size: int = 400
    test_size: int = 400
    image_px: int = 64
    planted_share: float = 0.0
    planted: dict[str, str] = field(default_factory=dict)  # {garment, color, pattern}
    val_fraction: float = 0.05  # deepfashion_inshop (and hf without a val split): train items held out as val
    # deepfashion
    annotations: str = "coarse"  # coarse | fine
    max_attributes: int = 3  # attributes named in one caption
    # folder
    index: str | None = None  # CSV or JSONL with path, caption (and optional item_id, category)
    hf: HfDataConfig = field(default_factory=HfDataConfig)


@dataclass
class ReplayConfig:
    """Rehearsal: a seeded subset of another dataset's train split joins the training split (conf/replay/).

    Validation, test and the zero-shot categories stay those of `data`; only training sees the replayed rows.
    """

    data: DataConfig | None = None  # the replayed dataset (a full data node); None: no replay
    share: float = 0.0  # in [0, 1): the share of each training epoch's samples that are replayed rows


@dataclass
class FreezeConfig:
    """Which parts of CLIP train. Blocks count from the top of each tower; -1 means all of it trains."""

    vision_trainable_blocks: int = -1
    text_trainable_blocks: int = -1
    train_projections: bool = True
    train_logit_scale: bool = True
    train_embeddings: bool = True  # embeddings and pre/post norms (only when all blocks train)


@dataclass
class ClipLoraConfig:
    """LoRA adapters (peft) on CLIP's attention and MLP projections; base weights train as `freeze` says."""

    enabled: bool = False
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
    )  # per encoder block: attention q/k/v/out projections, MLP fc1/fc2
    towers: list[str] = field(default_factory=lambda: ["vision", "text"])  # vision, text or both
    save_adapter: bool = True  # also write the adapter alone (peft save_pretrained) to OUTPUT/lora_adapter/


@dataclass
class WiseFtConfig:
    """WiSE-FT: export weight-space interpolations (1 - a) * start + a * fine-tuned at each alpha a."""

    alphas: list[float] = field(default_factory=list)  # empty: off
    export_alpha: float | None = None  # the alpha model/ holds; None: the best on val by the run's monitor


@dataclass
class ClipGeometry:
    """The shape of a CLIP model built with random weights (`model.pretrained=false`)."""

    image_size: int = 224
    patch_size: int = 32
    vision_hidden_size: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    vision_intermediate_size: int = 3072
    text_hidden_size: int = 512
    text_layers: int = 12
    text_heads: int = 8
    text_intermediate_size: int = 2048
    projection_dim: int = 512
    max_text_length: int = 77


@dataclass
class LrGroups:
    """Learning-rate multipliers of `model.optimizer.lr` per part of CLIP."""

    vision: float = 1.0  # the vision tower (embeddings, blocks, norms)
    text: float = 1.0  # the text tower
    projection: float = 1.0  # visual_projection and text_projection
    logit_scale: float = 1.0  # the temperature


@dataclass
class ModelConfig:
    """CLIP in a LightningModule (see conf/model/)."""

    name_or_path: str = MISSING  # hub id or local folder
    revision: str | None = None  # a hub id's commit, tag or branch (pins what the design stage keys use)
    pretrained: bool = True
    geometry: ClipGeometry = field(default_factory=ClipGeometry)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    lora: ClipLoraConfig = field(default_factory=ClipLoraConfig)
    wise_ft: WiseFtConfig = field(default_factory=WiseFtConfig)
    optimizer: Any = MISSING  # `_partial_` torch.optim.AdamW
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.0
    multi_positive: bool = True
    gradient_checkpointing: bool = False
    compile: bool = False
    max_logit_scale: float = 100.0
    lr_groups: LrGroups = field(default_factory=LrGroups)
    layer_decay: float = 1.0  # LLRD: top block at its tower's LR, each block below x decay, embeddings lowest
    ema: float | None = None  # EMA decay of the weights (e.g. 0.999); validated and exported when set


@dataclass
class SyntheticTrendConfig:
    """A synthetic trending set drawn when `trend.images` is missing (the offline demo)."""

    n: int = 200
    planted: dict[str, str] = field(default_factory=dict)  # {garment, color, pattern}
    planted_share: float = 0.35
    baseline_n: int = 200  # drawn into trend.baseline_images when that is set and missing
    baseline_planted_share: float = 0.05
    seed: int = 0
    px: int = 64


@dataclass
class TrendConfig:
    """The trending photos and how they are clustered (see conf/trend/)."""

    images: str | None = None  # folder (recursive) or a text file of paths
    baseline_images: str | None = None  # an earlier set of looks, for emerging trends
    periods: Any = None  # [{label, images}, ...] or a CSV/JSONL index of (path, date): see trendgen.periods
    period_unit: str = "month"  # an index's dates binned by month | quarter | season | year
    bootstrap: int = 2000  # resamples per period for the share intervals and the growth test
    confidence: float = 0.95  # of every interval; growth intervals hold it jointly over the clusters
    dedup: float | None = None  # a cosine: photos this close to an earlier one (reposts) are dropped
    clusters: Any = "auto"  # "auto" (best silhouette over auto_range) or a fixed k
    auto_range: list[int] = field(default_factory=lambda: [2, 10])
    auto_sample: int = 20000  # auto: k is chosen on a seeded sample of at most this many embeddings
    seed: int = 0
    n_init: int = 10
    target: str = "dominant"  # dominant | emerging
    exemplars: int = 6
    batch_size: int = 64
    num_workers: Any = "auto"  # DataLoader workers decoding photos: a count, or auto (see decode_workers)
    part_batches: int = 16  # one process: parts of this many batches are saved as they finish (resume)
    devices: int = 1  # > 1: Lightning predict on that many devices per node, a shard per rank
    num_nodes: int = 1  # > 1: under srun or torchrun, the ranks of every node embed; rank 0 runs the rest
    minibatch_threshold: int = 50000  # above this many embeddings, MiniBatchKMeans
    precision: str = (
        "auto"  # 32 | bf16 | int8 (ONNX Runtime, CPU) | auto: how embed, describe, rerank run CLIP
    )
    synthetic: SyntheticTrendConfig | None = None  # draw a synthetic set into `images` when it is missing


@dataclass
class CaptionsConfig:
    """The caption bank ranked against the trend (see conf/captions/)."""

    bank: str = MISSING
    top_k: int = 12
    per_facet: int = 3
    batch_size: int = 256
    look_template: str | None = "a {colour} {pattern} {garment}"  # core facets, ranked together as one look
    templates: list[str] = field(default_factory=list)  # prompt ensemble: each text as the mean over these


@dataclass
class LLMConfig:
    """The prompt writer (see conf/llm/)."""

    name: str = MISSING  # openai | template
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    timeout_s: float = 30.0
    max_retries: int = 3  # retries by the OpenAI SDK (its backoff, or the server's Retry-After)
    temperature: float = 0.7
    max_tokens: int = 200
    system_prompt: str = ""
    user_template: str = ""


@dataclass
class GeneratorConfig:
    """The diffusion model that draws designs (see conf/generator/)."""

    name: str = MISSING  # small_sd | tiny | trained | none
    name_or_path: str | None = None  # trained: the OUTPUT/generator folder of trendgen-train-generator
    revision: str | None = None  # small_sd from the hub: the commit, tag or branch to load
    num_images: int = 4
    seed: int = 0
    steps: int = 25
    guidance: float = 7.5
    height: int | None = 512  # None: the generator's own size
    width: int | None = 512
    attention_slicing: bool = False
    cpu_offload: bool = False
    half_precision_on_cuda: bool = True
    negative_prompt: str = ""


@dataclass
class DesignConfig:
    """Which stages `trendgen-design` runs, in order."""

    stages: list[str] = field(
        default_factory=lambda: ["embed", "cluster", "describe", "prompt", "generate", "report"]
    )
    reuse: bool = True  # reuse a stage's artifacts when its inputs and config hash match
    store: str | None = None  # finished stages are also kept here by key, for reuse from a fresh run dir


@dataclass
class EmaConfig:
    """Exponential moving average of the trained weights (diffusers' EMAModel); exported when on."""

    enabled: bool = True
    decay: float = 0.999
    warmup: bool = True  # the decay ramps up as (1 + step)^-power (crowsonkb), for short runs
    power: float = 0.75


@dataclass
class UNetConfig:
    """The denoiser trained from scratch (`diffusion=tiny`): a diffusers UNet2DConditionModel."""

    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    down_block_types: list[str] = field(
        default_factory=lambda: ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"]
    )
    up_block_types: list[str] = field(
        default_factory=lambda: ["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"]
    )
    layers_per_block: int = 1
    attention_head_dim: int = 8
    norm_num_groups: int = 32
    cross_attention_dim: int | None = None  # None: the text encoder's width
    pooled_condition: bool = True  # the pooled text embedding is added to the time embedding


@dataclass
class LoraConfig:
    """A LoRA (peft) on the UNet's attention projections (`diffusion=small_sd_lora`)."""

    rank: int = 8
    alpha: float = 8.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])


@dataclass
class DiffusionConfig:
    """The generator trendgen trains (see conf/diffusion/)."""

    name: str = MISSING  # tiny | small_sd_lora
    kind: str = MISSING  # pixel (trained from scratch, no VAE) | lora (a LoRA on a Stable Diffusion)
    name_or_path: str | None = None  # lora: the Stable Diffusion base (hub id or folder)
    revision: str | None = None
    text_encoder: str | None = None  # pixel: the trendgen CLIP folder whose text tower conditions the UNet
    resolution: int = 16
    prediction_type: str = "epsilon"  # epsilon | v_prediction
    beta_schedule: str = "squaredcos_cap_v2"
    num_train_timesteps: int = 1000
    caption_dropout: float = 0.1  # share of captions replaced by "" (classifier-free guidance)
    snr_gamma: float | None = None  # min-SNR loss weighting (5.0 in the paper); None: plain MSE
    noise_seed: int = 0  # noise and timesteps follow (seed, step, sample): the same on 1 rank or N
    cache_text_embeddings: bool = True  # encode every distinct caption once (the text encoder is frozen)
    cache_latents: bool = False  # lora: each training image goes through the VAE once, then from memory
    gradient_checkpointing: bool = False  # recompute the UNet's activations in backward (less memory)
    unet: UNetConfig = field(default_factory=UNetConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    optimizer: Any = MISSING  # `_partial_` torch.optim.AdamW
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1


@dataclass
class SamplingConfig:
    """How generator validation and `trendgen-eval mode=generator` sample and score (conf/sampling/)."""

    steps: int = 20
    guidance: float = 3.0
    seed: int = 0
    samples_per_prompt: int = 8  # images per category prompt
    batch_size: int = 128
    judge: str | None = (
        None  # the CLIP folder that judges fidelity, CLIP score, novelty; None: text encoder's
    )
    novelty_train_images: int = 2000  # training images each design is compared with
    novelty_heldout_images: int = 500  # real held-out images, the yardstick of "usually close"
    near_copy_quantile: float = 0.95  # closer than this quantile of real held-out images: a near-copy


class ExportWeights(Enum):
    best = "best"  # the checkpoint the monitoring ModelCheckpoint chose (callbacks.model_checkpoint.monitor)
    last = "last"  # the weights training ended with


@dataclass
class ExportConfig:
    """Which weights become `model/` / `generator/`, metrics.json and the value a sweep optimises."""

    weights: ExportWeights = ExportWeights.best


SCHEMAS: dict[str, type] = {
    "data": DataConfig,
    "replay": ReplayConfig,
    "model": ModelConfig,
    "trend": TrendConfig,
    "captions": CaptionsConfig,
    "llm": LLMConfig,
    "generator": GeneratorConfig,
    "design": DesignConfig,
    "diffusion": DiffusionConfig,
    "sampling": SamplingConfig,
    "export": ExportConfig,
}


def register_configs() -> None:
    """Store every schema as `<group>/schema` so each YAML file of the group can extend it."""
    cs = ConfigStore.instance()
    for group, node in SCHEMAS.items():
        cs.store(group=group, name="schema", node=node)
    from omegaconf import OmegaConf

    from trendgen.cli import conf_path
    from trendgen.runs import register_resolvers  # sweep point dir names (conf/hydra/default.yaml)

    register_resolvers()
    if not OmegaConf.has_resolver("trendgen.conf"):  # files shipped with the config tree (the caption bank)
        OmegaConf.register_new_resolver("trendgen.conf", conf_path)
