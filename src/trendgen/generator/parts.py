"""The parts of a generator under training: a UNet, a noise scheduler, a frozen text tower, a frozen VAE.

`diffusion.kind=pixel` builds a UNet from `diffusion.unet` that denoises RGB pixels at `diffusion.resolution`,
conditioned on the text tower of the trendgen CLIP folder `diffusion.text_encoder` (so generator and retrieval
model share one fashion vocabulary). `diffusion.kind=lora` loads a Stable Diffusion (`diffusion.name_or_path`)
and puts a peft LoRA on its UNet's attention projections; everything else stays frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from trendgen.errors import TrendgenError, first_line
from trendgen.hub import is_local
from trendgen.model.activations import use_fast_quick_gelu
from trendgen.model.open_clip_checkpoint import is_open_clip_folder

KINDS = ("pixel", "lora")


@dataclass
class GeneratorParts:
    """What the training module and the exporter need; only `unet` (or its LoRA) trains."""

    kind: str
    unet: Any
    noise_scheduler: Any
    text_encoder: Any
    tokenizer: Any
    vae: Any | None = None
    base: str | None = None  # lora: the Stable Diffusion it adapts
    revision: str | None = None

    @property
    def text_mask(self) -> bool:
        """A trendgen CLIP text tower was trained with attention masks; SD's text encoder is used without."""
        return self.kind == "pixel"

    @property
    def uses_pooled(self) -> bool:
        return self.unet.config.class_embed_type == "projection"

    @property
    def max_length(self) -> int:
        return int(min(self.tokenizer.model_max_length, self.text_encoder.config.max_position_embeddings))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.unet.parameters() if p.requires_grad]


def noise_scheduler_for(diffusion: Any) -> Any:
    from diffusers import DDPMScheduler

    if diffusion.prediction_type not in ("epsilon", "v_prediction"):
        raise TrendgenError(
            f"diffusion.prediction_type must be epsilon or v_prediction, not {diffusion.prediction_type!r}"
        )
    try:
        return DDPMScheduler(
            num_train_timesteps=int(diffusion.num_train_timesteps),
            beta_schedule=str(diffusion.beta_schedule),
            prediction_type=str(diffusion.prediction_type),
            clip_sample=False,
        )
    except (ValueError, NotImplementedError) as err:
        raise TrendgenError(f"diffusion.beta_schedule: {first_line(err)}") from None


def load_text_tower(folder: str) -> tuple[Any, Any]:
    """(text tower, tokenizer) of a trendgen model folder (a training run's `model/`): a CLIP's
    `CLIPTextModelWithProjection`, or a SigLIP's `SiglipTextModel` (its head gives the pooled embedding)."""
    from transformers import AutoConfig, AutoTokenizer, CLIPTextModelWithProjection, SiglipTextModel

    path = Path(folder).expanduser()
    if not (path / "config.json").is_file() and is_open_clip_folder(path):
        return _open_clip_text_tower(path)
    if not (path / "config.json").is_file():
        raise TrendgenError(
            f"diffusion.text_encoder: {path} is not a CLIP folder (no config.json); point it at the model/ "
            "of a trendgen-train run"
        )
    try:
        full = AutoConfig.from_pretrained(path)
        text_config = full.text_config
        if full.model_type == "siglip":
            encoder = SiglipTextModel.from_pretrained(path, config=text_config)
        else:
            text_config.projection_dim = full.projection_dim  # CLIPConfig keeps it at the top level only
            encoder = CLIPTextModelWithProjection.from_pretrained(path, config=text_config)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise TrendgenError(
            f"diffusion.text_encoder: cannot load a CLIP text tower from {path}: {first_line(err)}"
        ) from None
    use_fast_quick_gelu(encoder)
    return encoder.eval().requires_grad_(False), tokenizer


def _open_clip_text_tower(path: Path) -> tuple[Any, Any]:
    """The text tower of an open_clip folder trendgen saved: a `CLIPTextModelWithProjection`, or for a
    SigLIP a `SiglipTextModel`."""
    from transformers import CLIPTextModelWithProjection, SiglipTextModel

    from trendgen.model.build import load_saved

    model, tokenizer, _ = load_saved(path)
    text_config = model.config.text_config
    if model.config.model_type == "siglip":  # transformers 5's SiglipTextModel is the text transformer itself
        encoder = SiglipTextModel(text_config)
        encoder.load_state_dict(model.text_model.state_dict())
    else:
        text_config.projection_dim = model.config.projection_dim
        encoder = CLIPTextModelWithProjection(text_config)
        encoder.text_projection.load_state_dict(model.text_projection.state_dict())
        encoder.text_model.load_state_dict(model.text_model.state_dict())
    use_fast_quick_gelu(encoder)
    return encoder.eval().requires_grad_(False), tokenizer


def check_text_width(unet_width: int, text_encoder: Any, where: str) -> None:
    width = int(text_encoder.config.hidden_size)
    if width != unet_width:
        raise TrendgenError(
            f"{where}: the text encoder's width {width} does not fit the UNet's cross-attention width "
            f"{unet_width}; use a CLIP of that width or diffusion.unet.cross_attention_dim=null"
        )


def build_pixel_parts(diffusion: Any) -> GeneratorParts:
    """A UNet trained from scratch on pixels, conditioned on a trendgen CLIP's text tower."""
    from diffusers import UNet2DConditionModel

    if not diffusion.text_encoder:
        raise TrendgenError("diffusion.text_encoder is not set: the model/ folder of a trendgen-train run")
    text_encoder, tokenizer = load_text_tower(str(diffusion.text_encoder))
    u = diffusion.unet
    width = u.cross_attention_dim or int(text_encoder.config.hidden_size)
    check_text_width(int(width), text_encoder, "diffusion.unet.cross_attention_dim")
    if not len(u.block_out_channels) == len(u.down_block_types) == len(u.up_block_types):
        raise TrendgenError(
            "diffusion.unet: block_out_channels, down_block_types and up_block_types differ in length"
        )
    try:
        unet = UNet2DConditionModel(**unet_kwargs(diffusion, int(width), text_encoder, u.pooled_condition))
    except (ValueError, TypeError) as err:
        raise TrendgenError(f"diffusion.unet: {first_line(err)}") from None
    return GeneratorParts("pixel", unet, noise_scheduler_for(diffusion), text_encoder, tokenizer)


def pooled_width(text_encoder: Any) -> int:
    """The width of the tower's pooled text embedding (CLIP's projection, SigLIP's head)."""
    config = text_encoder.config
    return int(getattr(config, "projection_dim", None) or config.projection_size)


def unet_kwargs(diffusion: Any, width: int, text_encoder: Any, pooled_condition: bool) -> dict[str, Any]:
    u = diffusion.unet
    pooled = dict(
        class_embed_type="projection",
        projection_class_embeddings_input_dim=pooled_width(text_encoder),
    )
    return dict(
        sample_size=int(diffusion.resolution),
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(u.block_out_channels),
        down_block_types=tuple(u.down_block_types),
        up_block_types=tuple(u.up_block_types),
        layers_per_block=int(u.layers_per_block),
        attention_head_dim=int(u.attention_head_dim),
        norm_num_groups=int(u.norm_num_groups),
        cross_attention_dim=width,
        **(pooled if pooled_condition else {}),
    )


def _sd_part(cls: Any, base: str, subfolder: str, revision: str | None) -> Any:
    try:
        return cls.from_pretrained(base, subfolder=subfolder, revision=revision)
    except (OSError, ValueError) as err:
        raise TrendgenError(
            f"diffusion.name_or_path: cannot load the {subfolder} of Stable Diffusion {base!r}: "
            f"{first_line(err)}"
        ) from None


def build_lora_parts(diffusion: Any) -> GeneratorParts:
    """A Stable Diffusion with a trainable peft LoRA on its UNet's attention projections; the rest frozen."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from peft import LoraConfig
    from transformers import CLIPTextModel, CLIPTokenizer

    base = str(diffusion.name_or_path or "")
    if not base:
        raise TrendgenError(
            "diffusion.name_or_path is not set: the Stable Diffusion (hub id or folder) to adapt"
        )
    if is_local(base) and not (Path(base).expanduser() / "model_index.json").is_file():
        raise TrendgenError(
            f"diffusion.name_or_path: {base} is not a diffusers pipeline folder (no model_index.json)"
        )
    rev = diffusion.revision
    unet = _sd_part(UNet2DConditionModel, base, "unet", rev)
    vae = _sd_part(AutoencoderKL, base, "vae", rev)
    text_encoder = _sd_part(CLIPTextModel, base, "text_encoder", rev)
    use_fast_quick_gelu(text_encoder)  # SD 1.x's text tower is OpenAI's (QuickGELU)
    tokenizer = _sd_part(CLIPTokenizer, base, "tokenizer", rev)
    check_text_width(int(unet.config.cross_attention_dim), text_encoder, "diffusion.name_or_path")
    scheduler = _sd_part(DDPMScheduler, base, "scheduler", rev)
    for frozen in (unet, vae, text_encoder):
        frozen.requires_grad_(False).eval()
    lora = diffusion.lora
    try:
        unet.add_adapter(
            LoraConfig(
                r=int(lora.rank),
                lora_alpha=float(lora.alpha),
                lora_dropout=float(lora.dropout),
                init_lora_weights="gaussian",
                target_modules=list(lora.target_modules),
            )
        )
    except ValueError as err:
        raise TrendgenError(f"diffusion.lora: {first_line(err)}") from None
    for param in unet.parameters():  # the adapter trains in fp32 even when the base is half precision
        if param.requires_grad:
            param.data = param.data.float()
    return GeneratorParts("lora", unet, scheduler, text_encoder, tokenizer, vae=vae, base=base, revision=rev)


def build_parts(diffusion: Any) -> GeneratorParts:
    if diffusion.kind not in KINDS:
        raise TrendgenError(f"diffusion.kind must be one of {', '.join(KINDS)}, not {diffusion.kind!r}")
    parts = build_pixel_parts(diffusion) if diffusion.kind == "pixel" else build_lora_parts(diffusion)
    if diffusion.gradient_checkpointing:
        parts.unet.enable_gradient_checkpointing()
    return parts
