"""CLIP inference shared by every stage that runs a tower: image decoding in workers, batched forwards.

Images are decoded by `load_rgb` in DataLoader workers and turned into pixel tensors by the image processor in
the collate function (also in the workers); the main process only runs the model, in fp32 or under bf16
autocast (`trend.precision`, see `trendgen.inference.precision`; an ONNX Runtime int8 model from
`trendgen.inference.onnx_runtime` takes the torch model's place). Bad files are set aside with their reason.
The embed stage (`trendgen.design.embed`), its multi-rank form (`trendgen.design.embed_distributed`),
describe and the design rerank all use these pieces.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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

from trendgen.data.pixels import pixel_values
from trendgen.errors import TrendgenError

CLIP_TOKEN_LIMIT = 77  # CLIP's text context, also the cut for prompts given to CLIP-conditioned generators


class ImageFileDataset(Dataset):
    """Image files decoded with `load_rgb`; a bad file yields `image=None` and the reason."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        max_pixels: int | None = None,
        indices: Sequence[int] | None = None,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.max_pixels = max_pixels
        self.indices = list(range(len(self.paths))) if indices is None else list(indices)  # a subset

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        from trendgen.data.images import DEFAULT_MAX_PIXELS, load_rgb

        index = self.indices[position]
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
            pixels = pixel_values(self.image_processor, [it["image"] for it in good])
        return {"pixel_values": pixels, "indices": [it["index"] for it in good], "skipped": skipped}


def features_of(output: Any) -> torch.Tensor:
    """The projected features from `get_image_features`/`get_text_features` (a tensor or a model output)."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        pooled = output[0]
    return pooled


def autocast_for(device: torch.device, precision: str = "32") -> torch.autocast:
    """Autocast for one precision that torch runs: `bf16` or `fp16` (CPU or CUDA); `32` (or int8, which
    runs on ONNX Runtime, not here): disabled."""
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device.type, dtype=dtype)
    return torch.autocast(device.type, enabled=False)


@torch.inference_mode()
def embed_pixels(
    model: Any, pixel_values: torch.Tensor, device: torch.device, precision: str = "32"
) -> torch.Tensor:
    """L2-normalised float32 image embeddings of one batch, on the CPU."""
    with autocast_for(device, precision):
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


DECODE_BOUND_RATE = 400.0  # images/s: a tower faster than this waits on decoding (a 256 px PNG: ~2.2 core-ms)


def cpu_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def forward_threads(
    workers: int, device: torch.device, image_rate: Callable[[], float] | None = None
) -> int | None:
    """The forwards' intra-op threads while `workers` decode, or None to leave them. On a CPU where the
    workers and the forwards' threads would share too few cores and decoding is the work (the image tower,
    `image_rate()` images/s, outruns `DECODE_BOUND_RATE`), the forwards take the cores the workers leave
    (at least one): their spinning threads otherwise take the workers' cores. Tiny geometry, 2 workers on 2
    cores: 1,370-1,530 against 1,050-1,280 images/s (docs/BENCHMARKS.md). A forward-bound tower (ViT-B/32)
    keeps its threads: its workers wait on it, idle."""
    cores, threads = cpu_cores(), torch.get_num_threads()
    if device.type != "cpu" or workers == 0 or threads + workers <= cores or image_rate is None:
        return None
    if image_rate() <= DECODE_BOUND_RATE:
        return None
    return max(1, min(threads, cores - workers))


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` inside the block (None: unchanged), restored after."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def decode_workers(
    setting: Any, device: torch.device | None = None, image_rate: Callable[[], float] | None = None
) -> int:
    """DataLoader workers for `trend.num_workers`: a count, or `auto`: 2, but none on a CPU whose every core
    the forwards' threads already take, unless the image tower outruns decoding (`image_rate()`, its
    measured images/s, above `DECODE_BOUND_RATE`). Where the forward is the work, a worker takes a core from
    it in the middle of a forward: decoding between forwards was faster for bf16 and int8 and level for fp32
    at ViT-B/32; where decoding is the work (the tiny geometry), 2 workers were 1.5x faster
    (docs/BENCHMARKS.md)."""
    if str(setting).strip().lower() == "auto":
        cores = cpu_cores()
        on_cpu = (device or pick_device()).type == "cpu"
        if not (on_cpu and torch.get_num_threads() >= cores):
            return 2
        return 2 if image_rate is not None and image_rate() > DECODE_BOUND_RATE else 0
    try:
        count = int(setting)
    except (TypeError, ValueError):
        count = -1
    if count < 0 or str(count) != str(setting).strip():
        raise TrendgenError(f"trend.num_workers must be auto or a count (0, 1, ...), not {setting!r}")
    return count


def image_loader(
    paths: Sequence[str | Path],
    image_processor: Any,
    batch_size: int,
    num_workers: int,
    pin_memory: bool = False,
    indices: Sequence[int] | None = None,
) -> DataLoader:
    """Batches of pixel tensors: files decoded and processed in `num_workers` workers, failures set aside.

    `indices`: only these files, in this order (batches carry the files' own indices).
    """
    return DataLoader(
        ImageFileDataset(paths, indices=indices),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=EmbedCollate(image_processor),
        pin_memory=pin_memory,
    )


def embed_batches(
    model: Any, loader: DataLoader, device: torch.device, description: str, precision: str = "32"
) -> Iterator[dict]:
    """Each batch of `loader` embedded: {indices, features (None when no file was usable), skipped}."""
    with progress_bar() as progress:
        task = progress.add_task(description, total=len(loader.dataset))
        for batch in loader:
            features = None
            if batch["pixel_values"] is not None:
                features = embed_pixels(model, batch["pixel_values"], device, precision)
            yield {"indices": batch["indices"], "features": features, "skipped": batch["skipped"]}
            progress.advance(task, len(batch["indices"]) + len(batch["skipped"]))


def stack_features(chunks: list[torch.Tensor]) -> np.ndarray:
    """float32 rows of every chunk, [0, d] when there is none."""
    dim = int(chunks[0].shape[1]) if chunks else 0
    embeddings = torch.cat(chunks).numpy() if chunks else np.zeros((0, dim), dtype=np.float32)
    return embeddings.astype(np.float32, copy=False)


def embed_files(
    model: Any,
    image_processor: Any,
    paths: Sequence[str | Path],
    batch_size: int = 64,
    num_workers: int = 2,
    device: torch.device | None = None,
    description: str = "embedding images",
    precision: str = "32",
) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """Embed image files in batches. Returns (embeddings [n_used, d], indices of the used files, skipped)."""
    device = device or pick_device()
    model.eval().to(device)
    loader = image_loader(paths, image_processor, batch_size, num_workers, pin_memory=device.type == "cuda")
    chunks: list[torch.Tensor] = []
    used: list[int] = []
    skipped: list[tuple[int, str]] = []
    for batch in embed_batches(model, loader, device, description, precision):
        skipped.extend(batch["skipped"])
        if batch["features"] is not None:
            chunks.append(batch["features"])
            used.extend(batch["indices"])
    return stack_features(chunks), used, skipped
