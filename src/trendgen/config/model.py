"""Schema of the model group (conf/model/): a CLIP, its freezing, LoRA, WiSE-FT and optimiser."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from trendgen.config.ranges import ranged


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
    rank: int = ranged(8, low=1)
    alpha: float = ranged(16.0, low=0, open_low=True)
    dropout: float = ranged(0.0, low=0, high=1, open_high=True)
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
    """A CLIP or SigLIP in a LightningModule (see conf/model/)."""

    # hub id or local folder (library=open_clip: an open_clip name, hf-hub:ORG/REPO or local-dir:PATH)
    name_or_path: str = MISSING
    # transformers | open_clip (its checkpoints read into a CLIPModel or SiglipModel, saved as open_clip's)
    library: str = "transformers"
    pretrained_tag: str | None = None  # open_clip built-in name: its tag (laion2b_s34b_b79k, ...) or a file
    family: str = "clip"  # clip | siglip: the model built with random weights (a checkpoint says its own)
    revision: str | None = None  # a hub id's commit, tag or branch (pins what the design stage keys use)
    pretrained: bool = True
    geometry: ClipGeometry = field(default_factory=ClipGeometry)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    lora: ClipLoraConfig = field(default_factory=ClipLoraConfig)
    wise_ft: WiseFtConfig = field(default_factory=WiseFtConfig)
    optimizer: Any = MISSING  # `_partial_` torch.optim.AdamW
    warmup_fraction: float = ranged(0.05, low=0, high=1, open_high=True)
    min_lr_ratio: float = ranged(0.0, low=0, high=1)
    multi_positive: bool = True
    loss: str = "clip"  # clip (softmax InfoNCE) | siglip (pairwise sigmoid with a learnable bias)
    # gradient caching: the loss over this many rows per step, encoded in micro-batches of data.batch_size
    contrastive_batch: int | None = ranged(None, low=1)
    gradient_checkpointing: bool = False
    compile: bool = False
    max_logit_scale: float = 100.0
    lr_groups: LrGroups = field(default_factory=LrGroups)
    # LLRD: top block at its tower's LR, each block below x decay, embeddings lowest
    layer_decay: float = ranged(1.0, low=0, high=1, open_low=True)
    # EMA decay of the weights (e.g. 0.999); validated and exported when set
    ema: float | None = ranged(None, low=0, high=1, open_low=True, open_high=True)
