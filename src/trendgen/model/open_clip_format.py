"""open_clip's ViT CLIP as transformers' `CLIPModel` (and its SigLIP as `SiglipModel`): config and weights.

open_clip's own `VisionTransformer` and `TextTransformer` (ViT-B-32, ViT-B-16, ViT-L-14 and the checkpoints
fine-tuned from them, such as Marqo-FashionCLIP) are the network of a `CLIPModel` under other names: the
attention's packed `in_proj` splits into q, k and v, and the two projections are transposed. The text tower
pools as open_clip's does: the largest token id (`argmax`, which transformers does for the legacy
`eos_token_id=2`) or the first `eos_id` (`eos`). Other open_clip towers (timm or Hugging Face towers,
attention pooling, layer scale) are refused with the key that asks for them. open_clip's SigLIP (a timm
trunk) converts in `trendgen.model.open_clip_siglip`. Reading and writing checkpoints:
`trendgen.model.open_clip_checkpoint`.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from trendgen.errors import TrendgenError
from trendgen.model.open_clip_keys import RESBLOCK, StateReader, block_pairs, join_qkv, split_qkv
from trendgen.model.open_clip_siglip import (
    check_siglip,
    is_siglip,
    siglip_config,
    siglip_from_hf,
    siglip_to_hf,
)

__all__ = ["check_supported", "from_hf_state_dict", "hf_config", "to_hf_state_dict"]

# What an open_clip SigLIP sets away from the defaults below (check_siglip checks their values)
_SIGLIP_SETTINGS = {
    "init_logit_bias",
    "vision_cfg.timm_model_name",
    "text_cfg.no_causal_mask",
    "text_cfg.proj_bias",
}
# Keys a config may set freely; every other known key must keep open_clip's default (else: refused).
_FREE = {
    "model": {"embed_dim", "quick_gelu", "vision_cfg", "text_cfg", "custom_text", "init_logit_scale"},
    "vision": {"image_size", "layers", "width", "head_width", "mlp_ratio", "patch_size", "patch_dropout"},
    "text": {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio", "hf_tokenizer_name",
             "tokenizer_kwargs", "pad_id", "eos_id", "pool_type"},
}  # fmt: skip
_COMMON_DEFAULTS = {
    "ls_init_value": None,
    "final_ln_after_pool": False,
    "act_kwargs": None,
    "norm_kwargs": None,
    "block_type": None,
    "qk_norm": False,
    "scaled_cosine_attn": False,
    "scale_heads": False,
    "scale_attn_inner": False,
    "scale_attn": False,
    "scale_fc": False,
    "output_tokens": False,
}
_DEFAULTS = {
    "model": {"init_logit_bias": None, "cast_dtype": None, "nonscalar_logit_scale": False},
    "vision": _COMMON_DEFAULTS | {"attentional_pool": False, "no_ln_pre": False, "pool_type": "tok",
                                  "pos_embed_type": "learnable", "timm_model_name": None,
                                  "attn_pooler_queries": 256, "attn_pooler_heads": 8},
    "text": _COMMON_DEFAULTS | {"embed_cls": False, "no_causal_mask": False, "proj_bias": False,
                                "proj_type": "linear", "hf_model_name": None, "tokenizer_mode": None},
}  # fmt: skip


def check_supported(model_cfg: dict[str, Any], source: str) -> None:
    """One line naming the first key of `model_cfg` that asks for a network `CLIPModel` (or, for a SigLIP,
    `SiglipModel`) is not."""
    siglip = is_siglip(model_cfg)
    if siglip:
        check_siglip(model_cfg, source)
    parts = [("model", model_cfg), ("vision", model_cfg.get("vision_cfg") or {})]
    parts.append(("text", model_cfg.get("text_cfg") or {}))
    for part, cfg in parts:
        for key, value in cfg.items():
            where = key if part == "model" else f"{part}_cfg.{key}"
            if key in _FREE[part] or (
                part == "vision" and key.startswith("timm_") and key != "timm_model_name"
            ):
                continue  # the timm_* settings matter only with a timm tower
            if siglip and (
                where in _SIGLIP_SETTINGS or (where == "text_cfg.norm_kwargs" and set(value) <= {"eps"})
            ):
                continue
            if key not in _DEFAULTS[part] or value != _DEFAULTS[part][key]:
                raise TrendgenError(
                    f"open_clip model {source}: {where}={value!r} is a tower trendgen does not convert (it "
                    "reads open_clip's own ViT CLIP: ViT-B-32, ViT-B-16, ViT-L-14 and their fine-tunes)"
                )
    text = model_cfg.get("text_cfg") or {}
    pool = text.get("pool_type", "argmax")
    if siglip:
        return
    if pool not in ("argmax", "eos") or (pool == "eos" and text.get("eos_id", 2) == 2):
        raise TrendgenError(f"open_clip model {source}: text_cfg.pool_type={pool!r} is not converted")
    vision = model_cfg.get("vision_cfg") or {}
    if not isinstance(vision.get("layers", 12), int) or not isinstance(vision.get("image_size", 224), int):
        raise TrendgenError(f"open_clip model {source}: vision_cfg needs one image size and a layer count")


def hf_config(model_cfg: dict[str, Any], state: dict[str, Tensor] | None = None) -> Any:
    """The `CLIPConfig` (or `SiglipConfig`) of the same network; a SigLIP's timm trunk is read off `state`."""
    from transformers import CLIPConfig

    if is_siglip(model_cfg):
        return siglip_config(model_cfg, state)
    vision, text = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    act = "quick_gelu" if model_cfg.get("quick_gelu") else "gelu"
    embed = int(model_cfg["embed_dim"])
    v_width, t_width = int(vision.get("width", 768)), int(text.get("width", 512))
    argmax = text.get("pool_type", "argmax") == "argmax"
    vision_config = {
        "hidden_size": v_width,
        "intermediate_size": int(v_width * vision.get("mlp_ratio", 4.0)),
        "num_hidden_layers": int(vision.get("layers", 12)),
        "num_attention_heads": v_width // int(vision.get("head_width", 64)),
        "image_size": int(vision.get("image_size", 224)),
        "patch_size": int(vision.get("patch_size", 16)),
        "hidden_act": act,
        "projection_dim": embed,
    }
    text_config = {
        "vocab_size": int(text.get("vocab_size", 49408)),
        # CLIP BPE's start token; a vocabulary learnt from captions starts at 0 (used by neither tower)
        "bos_token_id": 49406 if int(text.get("vocab_size", 49408)) > 49406 else 0,
        "hidden_size": t_width,
        "intermediate_size": int(t_width * text.get("mlp_ratio", 4.0)),
        "num_hidden_layers": int(text.get("layers", 12)),
        "num_attention_heads": int(text.get("heads", 8)),
        "max_position_embeddings": int(text.get("context_length", 77)),
        "hidden_act": act,
        "projection_dim": embed,
        # transformers pools the largest id when eos_token_id is 2 (its legacy rule), as open_clip's argmax
        "eos_token_id": 2 if argmax else int(text["eos_id"]),
        "pad_token_id": int(text.get("pad_id", 0)),
    }
    logit_scale = float(model_cfg.get("init_logit_scale", math.log(1 / 0.07)))
    return CLIPConfig(
        text_config=text_config,
        vision_config=vision_config,
        projection_dim=embed,
        logit_scale_init_value=logit_scale,
    )


def _blocks(model_cfg: dict[str, Any]) -> list[tuple[str, str]]:
    """(open_clip prefix, transformers prefix) of every transformer block of both towers."""
    text = "text." if model_cfg.get("custom_text") else ""
    blocks = []
    for oc_tower, hf_tower, cfg in (
        ("visual.", "vision_model.", model_cfg.get("vision_cfg", {})),
        (text, "text_model.", model_cfg.get("text_cfg", {})),
    ):
        for i in range(int(cfg.get("layers", 12))):
            blocks.append((f"{oc_tower}transformer.resblocks.{i}.", f"{hf_tower}encoder.layers.{i}."))
    return blocks


def _pairs(model_cfg: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(open_clip key, transformers key, transposed) of every tensor but the packed attention."""
    text = "text." if model_cfg.get("custom_text") else ""
    pairs = [
        ("visual.class_embedding", "vision_model.embeddings.class_embedding", False),
        ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight", False),
        ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight", False),
        ("visual.proj", "visual_projection.weight", True),
        (f"{text}token_embedding.weight", "text_model.embeddings.token_embedding.weight", False),
        (f"{text}positional_embedding", "text_model.embeddings.position_embedding.weight", False),
        (f"{text}text_projection", "text_projection.weight", True),
        ("logit_scale", "logit_scale", False),
    ]
    named = block_pairs(
        "visual.", "vision_model.", (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm"))
    )
    named += block_pairs(text, "text_model.", (("ln_final", "final_layer_norm"),))
    for oc, hf in _blocks(model_cfg):
        named += block_pairs(oc, hf, RESBLOCK)
    return pairs + [(oc, hf, False) for oc, hf in named]


def to_hf_state_dict(
    state: dict[str, Tensor], model_cfg: dict[str, Any], source: str, config: Any
) -> dict[str, Tensor]:
    """An open_clip state dict in the names of `config`'s model; a missing or unknown tensor is one line."""
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.endswith("attn_mask")}
    if is_siglip(model_cfg):
        return siglip_to_hf(state, config, source)
    reader = StateReader(state, source)
    out = {
        hf: reader[oc].t().contiguous() if transposed else reader[oc]
        for oc, hf, transposed in _pairs(model_cfg)
    }
    for oc, hf in _blocks(model_cfg):
        for kind in ("weight", "bias"):
            out |= split_qkv(reader[f"{oc}attn.in_proj_{kind}"], f"{hf}self_attn.", kind)
    reader.check_all_read()
    return out


def from_hf_state_dict(state: dict[str, Tensor], model_cfg: dict[str, Any], config: Any) -> dict[str, Tensor]:
    """A `CLIPModel` (or `SiglipModel`) state dict in open_clip's names (`open_clip.create_model` loads)."""
    if is_siglip(model_cfg):
        return siglip_from_hf(state, config)
    out = {
        oc: (state[hf].t() if transposed else state[hf]).contiguous()
        for oc, hf, transposed in _pairs(model_cfg)
    }
    for oc, hf in _blocks(model_cfg):
        for kind in ("weight", "bias"):
            out[f"{oc}attn.in_proj_{kind}"] = join_qkv(state, f"{hf}self_attn.", kind).contiguous()
    return out
