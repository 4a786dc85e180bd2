"""open_clip's own features of a folder trendgen exported (run in the peers' environment, with open_clip).

Loads `local-dir:MODEL` with `open_clip.create_model_and_transforms`, embeds the photos of an embed stage's
index.json with open_clip's preprocessing, and encodes token ids (a JSON list of lists, e.g. from the
tokenizer trendgen saved beside the weights); writes unit image rows and raw text features as .npy files.

    PEERS/bin/python scripts/peers/open_clip_features.py --model RUN/model \
        --index DESIGN/embed/index.json --tokens tokens.json --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--index", required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{args.model}")
    model.eval()
    paths = json.loads(Path(args.index).read_text())["paths"]
    tokens = torch.tensor(json.loads(Path(args.tokens).read_text()))
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.open(q).convert("RGB")) for q in paths])
        images = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1)
        texts = model.encode_text(tokens)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "images.npy", images.numpy())
    np.save(out / "texts.npy", texts.numpy())
    print(json.dumps({"open_clip": open_clip.__version__, "images": len(paths), "texts": len(tokens)}))


if __name__ == "__main__":
    main()
