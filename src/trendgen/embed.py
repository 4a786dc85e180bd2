"""Embed stage: every trending (and baseline) image through CLIP's image tower, in batches.

Images are decoded by `load_rgb` in DataLoader workers and turned into pixel tensors by the image processor in
the collate function (also in the workers); the main process only runs the model, under bf16/fp16 autocast on
CUDA. Bad files are skipped and recorded with their reason. The pieces (`image_loader`, `embed_pixels`) are
the ones a Lightning `predict_step` with a shard-writing `BasePredictionWriter` reuses to spread the same work
over several GPUs or nodes.

Artifacts (in `<output_dir>/embed/`): `embeddings.npy` (float32, L2-normalised, one row per used image, in
index order) and `index.json` (`paths`, `sets` (current | baseline) per row, `skipped` [{path, reason}],
`totals` per set).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch.utils.data import DataLoader, Dataset

from trendgen.errors import TrendgenError
from trendgen.image_files import trend_files

EMBEDDINGS = "embeddings.npy"
INDEX = "index.json"


class ImageFileDataset(Dataset):
    """Image files decoded with `load_rgb`; a bad file yields `image=None` and the reason."""

    def __init__(self, paths: Sequence[str | Path], max_pixels: int | None = None) -> None:
        self.paths = [str(p) for p in paths]
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from trendgen.data.images import DEFAULT_MAX_PIXELS, load_rgb

        image, reason = load_rgb(self.paths[index], max_pixels=self.max_pixels or DEFAULT_MAX_PIXELS)
        return {"image": image, "reason": reason, "index": index}


class EmbedCollate:
    """Turns decoded images into one pixel tensor with the CLIP image processor; keeps the failures aside."""

    def __init__(self, image_processor: Any) -> None:
        self.image_processor = image_processor

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        good = [it for it in items if it["image"] is not None]
        skipped = [(it["index"], it["reason"]) for it in items if it["image"] is None]
        pixels = None
        if good:
            pixels = self.image_processor(images=[it["image"] for it in good], return_tensors="pt")[
                "pixel_values"
            ]
        return {"pixel_values": pixels, "indices": [it["index"] for it in good], "skipped": skipped}


def features_of(output: Any) -> torch.Tensor:
    """The projected features from `get_image_features`/`get_text_features` (a tensor or a model output)."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        pooled = output[0]
    return pooled


def autocast_for(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA where supported (fp16 otherwise); disabled on CPU."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


@torch.inference_mode()
def embed_pixels(model: Any, pixel_values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """L2-normalised float32 image embeddings of one batch, on the CPU."""
    with autocast_for(device):
        out = model.get_image_features(pixel_values=pixel_values.to(device, non_blocking=True))
    feats = features_of(out).float()
    return torch.nn.functional.normalize(feats, dim=-1).cpu()


def progress_bar() -> Progress:
    """A rich progress bar with rate and time left (quiet when the output is not a terminal)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def image_loader(
    paths: Sequence[str | Path],
    image_processor: Any,
    batch_size: int,
    num_workers: int,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches of pixel tensors: files decoded and processed in `num_workers` workers, failures set aside."""
    return DataLoader(
        ImageFileDataset(paths),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=EmbedCollate(image_processor),
        pin_memory=pin_memory,
    )


def embed_files(
    model: Any,
    image_processor: Any,
    paths: Sequence[str | Path],
    batch_size: int = 64,
    num_workers: int = 2,
    device: torch.device | None = None,
    description: str = "embedding images",
) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """Embed image files in batches. Returns (embeddings [n_used, d], indices of the used files, skipped)."""
    device = device or pick_device()
    model.eval().to(device)
    loader = image_loader(paths, image_processor, batch_size, num_workers, pin_memory=device.type == "cuda")
    chunks: list[torch.Tensor] = []
    used: list[int] = []
    skipped: list[tuple[int, str]] = []
    with progress_bar() as progress:
        task = progress.add_task(description, total=len(paths))
        for batch in loader:
            skipped.extend(batch["skipped"])
            if batch["pixel_values"] is not None:
                chunks.append(embed_pixels(model, batch["pixel_values"], device))
                used.extend(batch["indices"])
            progress.advance(task, len(batch["indices"]) + len(batch["skipped"]))
    dim = int(chunks[0].shape[1]) if chunks else 0
    embeddings = torch.cat(chunks).numpy() if chunks else np.zeros((0, dim), dtype=np.float32)
    return embeddings.astype(np.float32, copy=False), used, skipped


def run(cfg: Any, clip: Any, stage_dir: Path, group: Any = None) -> list[str]:
    """Embed `trend.images` (and `trend.baseline_images`) into `stage_dir`; returns the files written.

    `group`: the `EmbedGroup` of ranks srun or torchrun started, which share the work; without one,
    `trend.devices > 1` starts that many ranks here (`ddp_spawn`).
    """
    model, _tokenizer, image_processor = clip
    current, baseline = trend_files(cfg.trend)
    paths = [*current, *baseline]
    sets = ["current"] * len(current) + ["baseline"] * len(baseline)
    loader_args = {"batch_size": cfg.trend.batch_size, "num_workers": cfg.trend.num_workers}
    if group is not None:
        embeddings, used, skipped = group.embed(
            model, image_processor, paths, stage_dir / "shards", **loader_args
        )
    elif cfg.trend.get("devices", 1) > 1:  # one process per device; this process merges the shards
        from trendgen.embed_distributed import embed_files_distributed

        embeddings, used, skipped = embed_files_distributed(
            model,
            image_processor,
            paths,
            shard_dir=stage_dir / "shards",
            **loader_args,
            devices=int(cfg.trend.devices),
            strategy="ddp_spawn",
        )
    else:
        embeddings, used, skipped = embed_files(model, image_processor, paths, **loader_args)
    used_current = sum(1 for i in used if sets[i] == "current")
    if used_current == 0:
        raise TrendgenError(
            f"trend.images: none of the {len(current)} files could be used as an image "
            f"(first reason: {skipped[0][1] if skipped else 'unknown'})"
        )
    if baseline and len(used) == used_current:
        raise TrendgenError(f"trend.baseline_images: none of the {len(baseline)} files could be used")
    index = {
        "paths": [str(paths[i]) for i in used],
        "sets": [sets[i] for i in used],
        "skipped": [{"path": str(paths[i]), "reason": reason, "set": sets[i]} for i, reason in skipped],
        "totals": {"current": len(current), "baseline": len(baseline)},
    }
    np.save(stage_dir / EMBEDDINGS, embeddings)
    (stage_dir / INDEX).write_text(json.dumps(index, indent=1))
    return [EMBEDDINGS, INDEX]


def load(stage_dir: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The embeddings and index an earlier run of this stage wrote."""
    return np.load(stage_dir / EMBEDDINGS), json.loads((stage_dir / INDEX).read_text())
