"""Schemas of the groups of the generator trendgen trains: diffusion and sampling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from trendgen.config.ranges import ranged


@dataclass
class EmaConfig:
    """Exponential moving average of the trained weights (diffusers' EMAModel); exported when on."""

    enabled: bool = True
    decay: float = ranged(0.999, low=0, high=1)
    warmup: bool = True  # the decay ramps up as (1 + step)^-power (crowsonkb), for short runs
    power: float = ranged(0.75, low=0, open_low=True)


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
class UnetLoraConfig:
    """A LoRA (peft) on the UNet's attention projections (`diffusion=small_sd_lora`)."""

    rank: int = ranged(8, low=1)
    alpha: float = ranged(8.0, low=0, open_low=True)
    dropout: float = ranged(0.0, low=0, high=1, open_high=True)
    target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])


@dataclass
class DiffusionConfig:
    """The generator trendgen trains (see conf/diffusion/)."""

    name: str = MISSING  # tiny | small_sd_lora
    kind: str = MISSING  # pixel (trained from scratch, no VAE) | lora (a LoRA on a Stable Diffusion)
    name_or_path: str | None = None  # lora: the Stable Diffusion base (hub id or folder)
    revision: str | None = None
    text_encoder: str | None = None  # pixel: the trendgen CLIP folder whose text tower conditions the UNet
    resolution: int = ranged(16, low=8)
    prediction_type: str = "epsilon"  # epsilon | v_prediction
    beta_schedule: str = "squaredcos_cap_v2"
    num_train_timesteps: int = ranged(1000, low=1)
    # share of captions replaced by "" (classifier-free guidance)
    caption_dropout: float = ranged(0.1, low=0, high=1, open_high=True)
    # min-SNR loss weighting (5.0 in the paper); None: plain MSE
    snr_gamma: float | None = ranged(None, low=0, open_low=True)
    noise_seed: int = 0  # noise and timesteps follow (seed, step, sample): the same on 1 rank or N
    cache_text_embeddings: bool = True  # encode every distinct caption once (the text encoder is frozen)
    cache_latents: bool = False  # lora: each training image goes through the VAE once, then from memory
    gradient_checkpointing: bool = False  # recompute the UNet's activations in backward (less memory)
    unet: UNetConfig = field(default_factory=UNetConfig)
    lora: UnetLoraConfig = field(default_factory=UnetLoraConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    optimizer: Any = MISSING  # `_partial_` torch.optim.AdamW
    warmup_steps: int = ranged(100, low=0)
    min_lr_ratio: float = ranged(0.1, low=0, high=1)


@dataclass
class SamplingConfig:
    """How generator validation and `trendgen-eval mode=generator` sample and score (conf/sampling/)."""

    steps: int = ranged(20, low=1)
    guidance: float = ranged(3.0, low=0)
    seed: int = 0
    samples_per_prompt: int = ranged(8, low=1)  # images per category prompt
    batch_size: int = ranged(128, low=1)
    judge: str | None = (
        None  # the CLIP folder that judges fidelity, CLIP score, novelty; None: text encoder's
    )
    novelty_train_images: int = ranged(2000, low=1)  # training images each design is compared with
    novelty_heldout_images: int = ranged(500, low=1)  # real held-out images, the yardstick of "usually close"
    # closer than this quantile of real held-out images: a near-copy
    near_copy_quantile: float = ranged(0.95, low=0, high=1, open_low=True, open_high=True)
