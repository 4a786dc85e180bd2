"""The model families trendgen trains behind one interface: Hugging Face `CLIPModel` and `SiglipModel`.

A family says how to build a model of a geometry with random weights, which processor its folder saves,
how its captions are padded (SigLIP's text tower pools the last position, so its captions are padded to the
full length and it attends to the padding, as big_vision and open_clip train it, with no attention mask;
CLIP's pools the end token and takes any padding with its mask), and which modules are
its heads and its embeddings (freezing, LR groups). Both keep the same tower names (`vision_model`,
`text_model`, `encoder.layers`), so LoRA, layer-wise decay and the checkpoints treat them alike. A family
is read off a loaded model's `config.model_type`; `model.family` chooses it for random weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from trendgen.errors import TrendgenError
from trendgen.model.activations import use_fast_quick_gelu

__all__ = [
    "FAMILIES",
    "ModelFamily",
    "embedding_width",
    "family_named",
    "family_of",
    "text_inputs",
    "tokenize_texts",
]


@dataclass(frozen=True)
class ModelFamily:
    """What differs between the contrastive model families (see the module docstring)."""

    name: str
    classes: Callable[[], tuple[Any, Any]]  # (model class, processor class), imported on first use
    # the text tower pools the last position: every caption padded to the full length, no attention mask
    pads_to_max_length: bool
    build_random: Callable[[Any, int], Any]  # (geometry, vocab size) -> a model of the family
    image_processor: Callable[[int], Any]  # image size -> processor
    heads: Callable[[Any], list[nn.Module]]  # what maps each tower's pooled state to the shared space
    vision_embeddings: Callable[[Any], list[nn.Module]]  # patch and position embeddings, pre-norm

    @property
    def model_class(self) -> Any:
        return self.classes()[0]

    @property
    def processor_class(self) -> Any:
        return self.classes()[1]


def _text_settings(geometry: Any, vocab_size: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab_size,
        "hidden_size": geometry.text_hidden_size,
        "intermediate_size": geometry.text_intermediate_size,
        "num_hidden_layers": geometry.text_layers,
        "num_attention_heads": geometry.text_heads,
        "max_position_embeddings": geometry.max_text_length,
        # The caption tokenizer's ids; eos must not be 2 (transformers' legacy argmax pooling in CLIP).
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
    }


def _vision_settings(geometry: Any) -> dict[str, Any]:
    if geometry.image_size % geometry.patch_size:
        raise TrendgenError(
            f"model.geometry.image_size={geometry.image_size} is not a multiple of "
            f"model.geometry.patch_size={geometry.patch_size}"
        )
    return {
        "image_size": geometry.image_size,
        "patch_size": geometry.patch_size,
        "hidden_size": geometry.vision_hidden_size,
        "intermediate_size": geometry.vision_intermediate_size,
        "num_hidden_layers": geometry.vision_layers,
        "num_attention_heads": geometry.vision_heads,
    }


def random_clip(geometry: Any, vocab_size: int) -> Any:
    """A CLIPModel with random weights in the given geometry (a `ClipGeometry` config)."""
    from transformers import CLIPConfig, CLIPModel

    projection = {"projection_dim": geometry.projection_dim}
    config = CLIPConfig(
        text_config=_text_settings(geometry, vocab_size) | projection,
        vision_config=_vision_settings(geometry) | projection,
        projection_dim=geometry.projection_dim,
    )
    model = CLIPModel(config)
    use_fast_quick_gelu(model)
    return model


def random_siglip(geometry: Any, vocab_size: int) -> Any:
    """A SiglipModel with random weights, temperature 10 and bias -10. Its image embedding is the vision
    tower's width (the attention-pooling head keeps it): the text head projects to it, and `projection_dim`
    must equal it."""
    from transformers import SiglipConfig, SiglipModel, SiglipTextConfig

    if geometry.projection_dim != geometry.vision_hidden_size:
        raise TrendgenError(
            f"model.geometry.projection_dim={geometry.projection_dim} must equal "
            f"model.geometry.vision_hidden_size={geometry.vision_hidden_size} for SigLIP (its image "
            "embedding is the vision tower's width)"
        )
    text = SiglipTextConfig(**_text_settings(geometry, vocab_size), projection_size=geometry.projection_dim)
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=_vision_settings(geometry)))
    with torch.no_grad():  # the paper's start (transformers' init leaves both at 0)
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    return model


def clip_image_processor(image_size: int) -> Any:
    """CLIP preprocessing (resize the short side, centre crop, CLIP mean/std) at `image_size` pixels."""
    from transformers.models.clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )


def siglip_image_processor(image_size: int) -> Any:
    """SigLIP preprocessing (resize to a square, mean and std 0.5) at `image_size` pixels."""
    from transformers.models.siglip import SiglipImageProcessorPil

    return SiglipImageProcessorPil(size={"height": image_size, "width": image_size})


def _clip_classes() -> tuple[Any, Any]:
    from transformers import CLIPModel, CLIPProcessor  # a run loads the model classes of its family only

    return CLIPModel, CLIPProcessor


def _siglip_classes() -> tuple[Any, Any]:
    from transformers import SiglipModel, SiglipProcessor

    return SiglipModel, SiglipProcessor


FAMILIES: dict[str, ModelFamily] = {
    "clip": ModelFamily(
        name="clip",
        classes=_clip_classes,
        pads_to_max_length=False,
        build_random=random_clip,
        image_processor=clip_image_processor,
        heads=lambda m: [m.visual_projection, m.text_projection],
        vision_embeddings=lambda m: [m.vision_model.embeddings, m.vision_model.pre_layrnorm],
    ),
    "siglip": ModelFamily(
        name="siglip",
        classes=_siglip_classes,
        pads_to_max_length=True,
        build_random=random_siglip,
        image_processor=siglip_image_processor,
        heads=lambda m: [m.vision_model.head, m.text_model.head],
        vision_embeddings=lambda m: [m.vision_model.embeddings],
    ),
}


def family_named(name: str) -> ModelFamily:
    """The family `model.family` names; one line naming the choices otherwise."""
    if name not in FAMILIES:
        raise TrendgenError(f"model.family must be one of {', '.join(FAMILIES)}, not {name!r}")
    return FAMILIES[name]


def family_of(model_or_config: Any) -> ModelFamily:
    """The family of a model (or its config), by `config.model_type`; a wrapped (peft) model is unwrapped."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = str(getattr(config, "model_type", ""))
    if model_type not in FAMILIES:
        raise TrendgenError(
            f"a {model_type or type(model_or_config).__name__!r} model: trendgen trains "
            f"{', '.join(FAMILIES)} models"
        )
    return FAMILIES[model_type]


def embedding_width(model: Any) -> int:
    """The width of the shared image-text space (CLIP's projection; SigLIP's vision width)."""
    config = model.config
    return int(getattr(config, "projection_dim", None) or config.vision_config.hidden_size)


def text_inputs(model: Any, input_ids: Tensor, attention_mask: Tensor | None) -> dict[str, Tensor | None]:
    """The keyword arguments of the model's `get_text_features` for these tokens: SigLIP takes no mask."""
    mask = None if family_of(model).pads_to_max_length else attention_mask
    return {"input_ids": input_ids, "attention_mask": mask}


def tokenize_texts(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, Tensor]:
    """Token ids and attention mask of `texts` as the model's family pads them (at most `max_length`)."""
    padding: bool | str = "max_length" if family_of(model).pads_to_max_length else True
    return tokenizer(
        list(texts), padding=padding, truncation=True, max_length=max_length, return_tensors="pt"
    )
