"""Make tests/fixtures/open_clip_tiny[_siglip] with open_clip itself (run in the peers' environment).

A tiny open_clip model with seeded random weights, saved as open_clip saves for the hub
(open_clip_config.json and open_clip_model.safetensors, which `create_model_and_transforms('local-dir:...')`
loads), and what open_clip computes from it: the preprocessing of a photo, and image and text features.
`clip` is open_clip's own ViT CLIP; `siglip` is its SigLIP layout (a timm ViT with attention pooling, the
text tower unmasked and pooled at the last position, a bias), with a registered tiny timm trunk. trendgen's
tests read them to check the checkpoint conversion against the library, which trendgen's own environment
cannot import (open_clip needs torchvision).

    PEERS/bin/python scripts/peers/open_clip_fixture.py clip tests/fixtures/open_clip_tiny
    PEERS/bin/python scripts/peers/open_clip_fixture.py siglip tests/fixtures/open_clip_tiny_siglip
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image
from safetensors.torch import save_file
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

MODEL_CFG = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 2},
}
PREPROCESS_CFG = {
    "mean": list(open_clip.OPENAI_DATASET_MEAN),
    "std": list(open_clip.OPENAI_DATASET_STD),
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}
# open_clip's ViT-B-16-SigLIP layout at a tiny size (its trunk registered below)
SIGLIP_MODEL_CFG = {
    "embed_dim": 64,
    "init_logit_bias": -10,
    "custom_text": True,
    "vision_cfg": {
        "image_size": 32,
        "timm_model_name": "vit_tiny_patch8_siglip_32",
        "timm_model_pretrained": False,
        "timm_pool": "map",
        "timm_proj": "none",
    },
    "text_cfg": {
        "context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 2,
        "no_causal_mask": True, "proj_bias": True, "pool_type": "last", "norm_kwargs": {"eps": 1e-6},
    },
}  # fmt: skip
SIGLIP_PREPROCESS_CFG = {
    "mean": [0.5] * 3,
    "std": [0.5] * 3,
    "interpolation": "bicubic",
    "resize_mode": "squash",
}


@register_model
def vit_tiny_patch8_siglip_32(pretrained: bool = False, **kwargs):
    """timm's SigLIP ViT (no class token, attention-pooled) at 32 px: width 64, one head of 64, 2 blocks."""
    (
        kwargs.pop("pretrained_cfg", None),
        kwargs.pop("pretrained_cfg_overlay", None),
        kwargs.pop("cache_dir", None),
    )
    args = dict(
        img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=1, mlp_ratio=2.0, class_token=False
    )
    return VisionTransformer(**(args | {"global_pool": "map"} | kwargs))


def main() -> None:
    kind, out = sys.argv[1], Path(sys.argv[2])
    model_cfg, preprocess_cfg = (
        (MODEL_CFG, PREPROCESS_CFG) if kind == "clip" else (SIGLIP_MODEL_CFG, SIGLIP_PREPROCESS_CFG)
    )
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{_config(out, model_cfg, preprocess_cfg)}", load_weights=False)
    model.eval()
    with torch.no_grad():  # spread the features a little; SigLIP's timm trunk starts its latent at 0
        model.logit_scale.fill_(3.0)
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "open_clip_model.safetensors")

    # the library's own load of that folder, and its preprocessing
    loaded, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    loaded.eval()
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))  # portrait: 40 wide, 48 high
    photo.save(out / "photo.png")
    pixels = preprocess(Image.open(out / "photo.png").convert("RGB")).unsqueeze(0)
    images = torch.cat([pixels, torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))])
    tokens = torch.ones(2, 16, dtype=torch.long)  # SigLIP pools the last position: padding counts
    tokens[0, :6] = torch.tensor([998, 5, 17, 300, 42, 999])  # bos ... eos (the largest id: argmax pooling)
    tokens[1, :9] = torch.tensor([998, 7, 7, 800, 12, 13, 14, 15, 999])
    with torch.no_grad():
        image_features = loaded.encode_image(images)
        text_features = loaded.encode_text(tokens)
    expected = {
        "open_clip": open_clip.__version__,
        "pixels": pixels[0].tolist(),
        "images": images.tolist(),
        "tokens": tokens.tolist(),
        "image_features": image_features.tolist(),
        "text_features": text_features.tolist(),
        "logit_scale": float(loaded.logit_scale.detach()),
        "logit_bias": float(loaded.logit_bias.detach())
        if getattr(loaded, "logit_bias", None) is not None
        else None,
    }
    (out / "expected.json").write_text(json.dumps(expected) + "\n")
    print(
        f"{out}: open_clip {open_clip.__version__}, {sum(p.numel() for p in model.parameters()):,} parameters"
    )


def _config(out: Path, model_cfg: dict, preprocess_cfg: dict) -> Path:
    (out / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, indent=2) + "\n"
    )
    return out


if __name__ == "__main__":
    main()
