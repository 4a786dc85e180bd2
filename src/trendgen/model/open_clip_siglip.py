"""open_clip's SigLIP layout as transformers' `SiglipModel`: the config and the weights, both ways.

open_clip builds SigLIP (ViT-B-16-SigLIP, and Marqo-FashionSigLIP fine-tuned from it) from a timm ViT trunk
without a class token, pooled by attention to a learnt latent (`timm_pool: map`), and its own text tower,
unmasked, pooled at the last position and projected with a bias, beside a learnt temperature and bias. That
is `SiglipModel`'s network: timm's packed `qkv` and the pooling's `q` and `kv` map to the separate and packed
projections transformers keeps. Both towers use exact GELU in open_clip (transformers' SigLIP default is the
tanh approximation), so the converted config says `gelu`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from trendgen.errors import TrendgenError
from trendgen.model.open_clip_keys import RESBLOCK, StateReader, block_pairs, join_qkv, split_qkv

__all__ = ["TIMM_SIGLIP", "is_siglip", "siglip_config", "siglip_from_hf", "siglip_to_hf"]

# timm's SigLIP trunks: name -> (image size, patch, width, depth, MLP width, heads)
TIMM_SIGLIP: dict[str, tuple[int, int, int, int, int, int]] = {
    "vit_base_patch16_siglip_224": (224, 16, 768, 12, 3072, 12),
    "vit_base_patch16_siglip_256": (256, 16, 768, 12, 3072, 12),
    "vit_base_patch16_siglip_384": (384, 16, 768, 12, 3072, 12),
    "vit_base_patch16_siglip_512": (512, 16, 768, 12, 3072, 12),
    "vit_large_patch16_siglip_256": (256, 16, 1024, 24, 4096, 16),
    "vit_large_patch16_siglip_384": (384, 16, 1024, 24, 4096, 16),
    "vit_so400m_patch14_siglip_224": (224, 14, 1152, 27, 4304, 16),
    "vit_so400m_patch14_siglip_384": (384, 14, 1152, 27, 4304, 16),
}
TRUNK = "visual.trunk."
TEXT = "text."


def is_siglip(model_cfg: dict[str, Any]) -> bool:
    return "siglip" in str((model_cfg.get("vision_cfg") or {}).get("timm_model_name") or "")


def check_siglip(model_cfg: dict[str, Any], source: str) -> None:
    """One line naming the setting of an open_clip SigLIP config that `SiglipModel` does not have."""
    vision, text = model_cfg.get("vision_cfg") or {}, model_cfg.get("text_cfg") or {}
    wanted = [
        ("vision_cfg.timm_pool", vision.get("timm_pool"), "map"),
        ("vision_cfg.timm_proj", vision.get("timm_proj"), "none"),
        ("custom_text", model_cfg.get("custom_text"), True),
        ("text_cfg.no_causal_mask", text.get("no_causal_mask"), True),
        ("text_cfg.proj_bias", text.get("proj_bias"), True),
        ("text_cfg.pool_type", text.get("pool_type"), "last"),
    ]
    for key, value, expected in wanted:
        if value != expected:
            raise TrendgenError(
                f"open_clip model {source}: {key}={value!r} (a SigLIP tower converts with {expected!r})"
            )
    if model_cfg.get("init_logit_bias") is None:
        raise TrendgenError(f"open_clip model {source}: init_logit_bias=None (a SigLIP has a bias)")


def trunk_geometry(model_cfg: dict[str, Any], state: dict[str, Tensor] | None) -> dict[str, int]:
    """The timm trunk's geometry: read off its weights, else (random weights) from its name."""
    name = str(model_cfg["vision_cfg"]["timm_model_name"])
    if state is None:
        if name not in TIMM_SIGLIP:
            raise TrendgenError(
                f"open_clip model: vision_cfg.timm_model_name={name!r} is not a SigLIP trunk trendgen can "
                f"build with random weights ({', '.join(TIMM_SIGLIP)})"
            )
        image, patch, width, depth, mlp, heads = TIMM_SIGLIP[name]
        return {"image": image, "patch": patch, "width": width, "depth": depth, "mlp": mlp, "heads": heads}
    width, _, patch, _ = state[f"{TRUNK}patch_embed.proj.weight"].shape
    grid = math.isqrt(state[f"{TRUNK}pos_embed"].shape[1])
    depth = 1 + max(int(k[len(TRUNK) + 7 :].split(".")[0]) for k in state if k.startswith(f"{TRUNK}blocks."))
    mlp = state[f"{TRUNK}blocks.0.mlp.fc1.weight"].shape[0]
    heads = width // (72 if "so400m" in name else 64)  # timm's SigLIP trunks keep 64-wide heads (so400m: 72)
    return {"image": grid * patch, "patch": patch, "width": width, "depth": depth, "mlp": mlp, "heads": heads}


def siglip_config(model_cfg: dict[str, Any], state: dict[str, Tensor] | None) -> Any:
    """The `SiglipConfig` of the same network."""
    from transformers import SiglipConfig

    g, text = trunk_geometry(model_cfg, state), model_cfg.get("text_cfg") or {}
    width = int(text.get("width", 512))
    vocab = int(text.get("vocab_size", 32000))
    text_config = {
        "vocab_size": vocab,
        "hidden_size": width,
        "intermediate_size": int(width * text.get("mlp_ratio", 4.0)),
        "num_hidden_layers": int(text.get("layers", 12)),
        "num_attention_heads": int(text.get("heads", 8)),
        "max_position_embeddings": int(text.get("context_length", 64)),
        "hidden_act": "gelu",
        "layer_norm_eps": float((text.get("norm_kwargs") or {}).get("eps", 1e-5)),
        "projection_size": int(model_cfg["embed_dim"]),
        "pad_token_id": int(text.get("pad_id", 0)) % vocab,
        "bos_token_id": None,
        "eos_token_id": None,
    }
    vision_config = {
        "hidden_size": g["width"],
        "intermediate_size": g["mlp"],
        "num_hidden_layers": g["depth"],
        "num_attention_heads": g["heads"],
        "image_size": g["image"],
        "patch_size": g["patch"],
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-6,
    }
    if g["width"] != int(model_cfg["embed_dim"]):
        raise TrendgenError(
            f"open_clip model: embed_dim={model_cfg['embed_dim']} differs from the trunk's {g['width']}"
        )
    return SiglipConfig(text_config=text_config, vision_config=vision_config)


# timm's ViT block -> transformers' encoder layer (its packed `attn.qkv` apart)
TIMM_BLOCK = (
    ("norm1", "layer_norm1"),
    ("norm2", "layer_norm2"),
    ("attn.proj", "self_attn.out_proj"),
    ("mlp.fc1", "mlp.fc1"),
    ("mlp.fc2", "mlp.fc2"),
)
# timm's attention pooling (`attn_pool`) -> transformers' pooling head (its `q` and `kv` packed apart)
TIMM_POOL = (
    ("proj", "attention.out_proj"),
    ("norm", "layernorm"),
    ("mlp.fc1", "mlp.fc1"),
    ("mlp.fc2", "mlp.fc2"),
)


def _blocks(depth: int, text_layers: int) -> list[tuple[str, str, str, tuple[tuple[str, str], ...]]]:
    """(open_clip prefix, transformers prefix, packed q|k|v key, names) of every block of both towers."""
    vision = [
        (f"{TRUNK}blocks.{i}.", f"vision_model.encoder.layers.{i}.", "attn.qkv.", TIMM_BLOCK)
        for i in range(depth)
    ]
    text = [
        (f"{TEXT}transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}.", "attn.in_proj_", RESBLOCK)
        for i in range(text_layers)
    ]
    return vision + text


def _pairs(depth: int, text_layers: int) -> list[tuple[str, str]]:
    """(open_clip key, transformers key) of every tensor copied as it is."""
    v, t = "vision_model.", "text_model."
    pairs = block_pairs(
        f"{TRUNK}", f"{v}", (("patch_embed.proj", "embeddings.patch_embedding"), ("norm", "post_layernorm"))
    )
    pairs += block_pairs(f"{TRUNK}attn_pool.", f"{v}head.", TIMM_POOL)
    pairs += block_pairs(TEXT, t, (("text_projection", "head"), ("ln_final", "final_layer_norm")))
    pairs += [
        (f"{TEXT}token_embedding.weight", f"{t}embeddings.token_embedding.weight"),
        (f"{TEXT}positional_embedding", f"{t}embeddings.position_embedding.weight"),
    ]
    for oc, hf, _, names in _blocks(depth, text_layers):
        pairs += block_pairs(oc, hf, names)
    return pairs


def siglip_to_hf(state: dict[str, Tensor], config: Any, source: str) -> dict[str, Tensor]:
    """An open_clip SigLIP state dict in `SiglipModel`'s names; a missing or unknown tensor is one line."""
    depth, text_layers = config.vision_config.num_hidden_layers, config.text_config.num_hidden_layers
    reader, pool = StateReader(state, source), f"{TRUNK}attn_pool."
    out = {hf: reader[oc] for oc, hf in _pairs(depth, text_layers)}
    for oc, hf, packed, _ in _blocks(depth, text_layers):
        for kind in ("weight", "bias"):
            out |= split_qkv(reader[f"{oc}{packed}{kind}"], f"{hf}self_attn.", kind)
    for kind in ("weight", "bias"):  # the pooling's query, then its keys and values: one packed projection
        query, keys_values = reader[f"{pool}q.{kind}"], reader[f"{pool}kv.{kind}"]
        out[f"vision_model.head.attention.in_proj_{kind}"] = torch.cat([query, keys_values])
    out["vision_model.head.probe"] = reader[f"{pool}latent"]
    out["vision_model.embeddings.position_embedding.weight"] = reader[f"{TRUNK}pos_embed"][0]
    out["logit_scale"] = reader["logit_scale"].reshape(1)
    out["logit_bias"] = reader["logit_bias"].reshape(1)
    reader.check_all_read()
    return out


def siglip_from_hf(state: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    """A `SiglipModel` state dict in open_clip's names (what `open_clip.create_model` loads)."""
    depth, text_layers = config.vision_config.num_hidden_layers, config.text_config.num_hidden_layers
    out = {oc: state[hf] for oc, hf in _pairs(depth, text_layers)}
    for oc, hf, packed, _ in _blocks(depth, text_layers):
        for kind in ("weight", "bias"):
            out[f"{oc}{packed}{kind}"] = join_qkv(state, f"{hf}self_attn.", kind)
    pool, width = f"{TRUNK}attn_pool.", config.vision_config.hidden_size
    for kind in ("weight", "bias"):
        packed = state[f"vision_model.head.attention.in_proj_{kind}"]
        out[f"{pool}q.{kind}"], out[f"{pool}kv.{kind}"] = packed[:width], packed[width:]
    out[f"{pool}latent"] = state["vision_model.head.probe"]
    out[f"{TRUNK}pos_embed"] = state["vision_model.embeddings.position_embedding.weight"][None]
    out["logit_scale"] = state["logit_scale"].reshape(())
    out["logit_bias"] = state["logit_bias"].reshape(())
    return {k: v.contiguous() for k, v in out.items()}
