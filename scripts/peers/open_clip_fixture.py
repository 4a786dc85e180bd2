"""Make tests/fixtures/open_clip_tiny with open_clip itself (run in the peers' environment, which has it).

A tiny open_clip `CLIP` with seeded random weights, saved as open_clip saves for the hub
(open_clip_config.json and open_clip_model.safetensors, which `create_model_and_transforms('local-dir:...')`
loads), and what open_clip computes from it: the preprocessing of a photo, and image and text features.
trendgen's tests read it to check the checkpoint conversion against the library, which trendgen's own
environment cannot import (open_clip needs torchvision).

    PEERS/bin/python scripts/peers/open_clip_fixture.py tests/fixtures/open_clip_tiny
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


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**MODEL_CFG).eval()
    with torch.no_grad():  # open_clip starts the projections small; spread the features a little
        model.logit_scale.fill_(3.0)
    (out / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}, indent=2) + "\n"
    )
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "open_clip_model.safetensors")

    # the library's own load of that folder, and its preprocessing
    loaded, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    loaded.eval()
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))  # portrait: 40 wide, 48 high
    photo.save(out / "photo.png")
    pixels = preprocess(Image.open(out / "photo.png").convert("RGB")).unsqueeze(0)
    images = torch.cat([pixels, torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))])
    tokens = torch.zeros(2, 16, dtype=torch.long)
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
    }
    (out / "expected.json").write_text(json.dumps(expected) + "\n")
    print(
        f"{out}: open_clip {open_clip.__version__}, {sum(p.numel() for p in model.parameters()):,} parameters"
    )


if __name__ == "__main__":
    main()
