"""The plain open_clip loop a user writes to embed a folder (run in the peers' environment).

open_clip's model and its own preprocessing (torchvision) in a torch DataLoader, `encode_image` under
inference mode, unit rows saved as one .npy. Started by scripts/bench_peers.py; prints the loop's seconds.

    PEER_PYTHON scripts/peers/openclip_embed.py --model ViT-B-32-quickgelu --pretrained CKPT \
        --images DIR --out FILE
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset


class Files(Dataset):
    def __init__(self, paths: list[Path], preprocess) -> None:
        self.paths, self.preprocess = paths, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.preprocess(Image.open(self.paths[i]).convert("RGB"))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--pretrained", default=None)
    p.add_argument("--config-dir", default=None, help="extra open_clip model configs (add_model_config)")
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.config_dir:
        open_clip.add_model_config(args.config_dir)
    model, _, preprocess = open_clip.create_model_and_transforms(args.model, pretrained=args.pretrained)
    model.eval().to(args.device)
    paths = sorted(q for q in Path(args.images).iterdir() if q.suffix.lower() in {".png", ".jpg", ".jpeg"})
    cuda = args.device.startswith("cuda")
    loader = DataLoader(
        Files(paths, preprocess), batch_size=args.batch_size, num_workers=args.workers, pin_memory=cuda
    )
    autocast = torch.autocast(torch.device(args.device).type, torch.bfloat16, args.precision == "bf16")
    start = time.perf_counter()
    rows = []
    with torch.inference_mode(), autocast:
        for pixels in loader:
            features = model.encode_image(pixels.to(args.device, non_blocking=True)).float()
            rows.append(torch.nn.functional.normalize(features, dim=-1).cpu())
    loop = time.perf_counter() - start
    np.save(args.out, torch.cat(rows).numpy())
    print(json.dumps({"images": len(paths), "loop_s": loop}))


if __name__ == "__main__":
    main()
