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


def _pairs(depth: int, text_layers: int) -> list[tuple[str, str]]:
    """(open_clip key, transformers key) of every tensor copied as it is."""
    v, t = "vision_model.", "text_model."
    pairs = [
        (f"{TRUNK}patch_embed.proj.weight", f"{v}embeddings.patch_embedding.weight"),
        (f"{TRUNK}patch_embed.proj.bias", f"{v}embeddings.patch_embedding.bias"),
        (f"{TEXT}token_embedding.weight", f"{t}embeddings.token_embedding.weight"),
        (f"{TEXT}positional_embedding", f"{t}embeddings.position_embedding.weight"),
        (f"{TEXT}text_projection.weight", f"{t}head.weight"),
        (f"{TEXT}text_projection.bias", f"{t}head.bias"),
    ]
    for w in ("weight", "bias"):
        pairs += [
            (f"{TRUNK}norm.{w}", f"{v}post_layernorm.{w}"),
            (f"{TRUNK}attn_pool.proj.{w}", f"{v}head.attention.out_proj.{w}"),
            (f"{TRUNK}attn_pool.norm.{w}", f"{v}head.layernorm.{w}"),
            (f"{TRUNK}attn_pool.mlp.fc1.{w}", f"{v}head.mlp.fc1.{w}"),
            (f"{TRUNK}attn_pool.mlp.fc2.{w}", f"{v}head.mlp.fc2.{w}"),
            (f"{TEXT}ln_final.{w}", f"{t}final_layer_norm.{w}"),
        ]
        for i in range(depth):
            oc, hf = f"{TRUNK}blocks.{i}.", f"{v}encoder.layers.{i}."
            pairs += [
                (f"{oc}norm1.{w}", f"{hf}layer_norm1.{w}"),
                (f"{oc}norm2.{w}", f"{hf}layer_norm2.{w}"),
                (f"{oc}attn.proj.{w}", f"{hf}self_attn.out_proj.{w}"),
                (f"{oc}mlp.fc1.{w}", f"{hf}mlp.fc1.{w}"),
                (f"{oc}mlp.fc2.{w}", f"{hf}mlp.fc2.{w}"),
            ]
        for i in range(text_layers):
            oc, hf = f"{TEXT}transformer.resblocks.{i}.", f"{t}encoder.layers.{i}."
            pairs += [
                (f"{oc}ln_1.{w}", f"{hf}layer_norm1.{w}"),
                (f"{oc}ln_2.{w}", f"{hf}layer_norm2.{w}"),
                (f"{oc}attn.out_proj.{w}", f"{hf}self_attn.out_proj.{w}"),
                (f"{oc}mlp.c_fc.{w}", f"{hf}mlp.fc1.{w}"),
                (f"{oc}mlp.c_proj.{w}", f"{hf}mlp.fc2.{w}"),
            ]
    return pairs


def _packed(depth: int, text_layers: int) -> list[tuple[str, str]]:
    """(open_clip packed q|k|v tensor, transformers attention prefix) of every block."""
    blocks = [
        (f"{TRUNK}blocks.{i}.attn.qkv", f"vision_model.encoder.layers.{i}.self_attn.") for i in range(depth)
    ]
    text = f"{TEXT}transformer.resblocks.{{}}.attn.in_proj_"
    blocks += [(text.format(i), f"text_model.encoder.layers.{i}.self_attn.") for i in range(text_layers)]
    return blocks


def _suffix(packed: str, kind: str) -> str:
    return f"{packed}.{kind}" if packed.endswith("qkv") else f"{packed}{kind}"


def siglip_to_hf(state: dict[str, Tensor], config: Any, source: str) -> dict[str, Tensor]:
    """An open_clip SigLIP state dict in `SiglipModel`'s names; a missing or unknown tensor is one line."""
    depth, text_layers = config.vision_config.num_hidden_layers, config.text_config.num_hidden_layers
    out: dict[str, Tensor] = {}
    try:
        used = set()
        for oc, hf in _pairs(depth, text_layers):
            out[hf], _ = state[oc], used.add(oc)
        for packed, hf in _packed(depth, text_layers):
            for kind in ("weight", "bias"):
                q, k, v = state[_suffix(packed, kind)].chunk(3)
                out |= {f"{hf}q_proj.{kind}": q, f"{hf}k_proj.{kind}": k, f"{hf}v_proj.{kind}": v}
                used.add(_suffix(packed, kind))
        pool = f"{TRUNK}attn_pool."
        for kind in ("weight", "bias"):
            out[f"vision_model.head.attention.in_proj_{kind}"] = torch.cat(
                [state[f"{pool}q.{kind}"], state[f"{pool}kv.{kind}"]]
            )
            used |= {f"{pool}q.{kind}", f"{pool}kv.{kind}"}
        out["vision_model.head.probe"] = state[f"{pool}latent"]
        out["vision_model.embeddings.position_embedding.weight"] = state[f"{TRUNK}pos_embed"][0]
        out["logit_scale"] = state["logit_scale"].reshape(1)
        out["logit_bias"] = state["logit_bias"].reshape(1)
        used |= {f"{pool}latent", f"{TRUNK}pos_embed", "logit_scale", "logit_bias"}
    except KeyError as err:
        raise TrendgenError(f"open_clip model {source}: its weights lack {err.args[0]!r}") from err
    extra = sorted(set(state) - used)
    if extra:
        raise TrendgenError(f"open_clip model {source}: weights the converter does not know: {extra[0]!r}")
    return out


def siglip_from_hf(state: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    """A `SiglipModel` state dict in open_clip's names (what `open_clip.create_model` loads)."""
    depth, text_layers = config.vision_config.num_hidden_layers, config.text_config.num_hidden_layers
    out = {oc: state[hf] for oc, hf in _pairs(depth, text_layers)}
    for packed, hf in _packed(depth, text_layers):
        for kind in ("weight", "bias"):
            out[_suffix(packed, kind)] = torch.cat([state[f"{hf}{p}_proj.{kind}"] for p in "qkv"])
    pool, width = f"{TRUNK}attn_pool.", config.vision_config.hidden_size
    for kind in ("weight", "bias"):
        packed = state[f"vision_model.head.attention.in_proj_{kind}"]
        out[f"{pool}q.{kind}"], out[f"{pool}kv.{kind}"] = packed[:width], packed[width:]
    out[f"{pool}latent"] = state["vision_model.head.probe"]
    out[f"{TRUNK}pos_embed"] = state["vision_model.embeddings.position_embedding.weight"][None]
    out["logit_scale"] = state["logit_scale"].reshape(())
    out["logit_bias"] = state["logit_bias"].reshape(())
    return {k: v.contiguous() for k, v in out.items()}
