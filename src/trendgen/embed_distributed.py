"""The embed stage on several devices or nodes: Lightning predict, a shard per rank, merged in input order.

Each rank embeds its share of the files (Lightning's distributed sampler), and a `BasePredictionWriter` writes
`shard-<rank>.npz` (file indices, embeddings, skipped files) at the end of the epoch; rank 0 (or the caller,
after the run) merges the shards back into the files' original order. The sampler pads the last ranks with
repeated files; a file written twice carries the same embedding both times, so the merge keeps one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader

from trendgen.embed import EmbedCollate, ImageFileDataset, embed_pixels


class ImageEmbedder(pl.LightningModule):
    """CLIP's image tower as a Lightning predict module."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        features = None
        if batch["pixel_values"] is not None:
            features = embed_pixels(self.model, batch["pixel_values"], self.device)
        return {"indices": batch["indices"], "features": features, "skipped": batch["skipped"]}


class ShardWriter(BasePredictionWriter):
    """Writes each rank's predictions to `<shard_dir>/shard-<rank>.npz` once its epoch ends."""

    def __init__(self, shard_dir: str | Path) -> None:
        super().__init__(write_interval="epoch")
        self.shard_dir = Path(shard_dir)

    def write_on_epoch_end(
        self, trainer: pl.Trainer, pl_module: Any, predictions: Any, batch_indices: Any
    ) -> None:
        rows = [p for p in predictions if p["features"] is not None]
        indices = np.array([i for p in rows for i in p["indices"]], dtype=np.int64)
        features = torch.cat([p["features"] for p in rows]).numpy() if rows else np.zeros((0, 0), np.float32)
        skipped = [list(s) for p in predictions for s in p["skipped"]]
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        np.savez(
            self.shard_dir / f"shard-{trainer.global_rank:05d}.npz",
            indices=indices,
            features=features.astype(np.float32),
            skipped=np.array(json.dumps(skipped)),
        )


def merge_shards(shard_dir: str | Path) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """(embeddings [n_used, d] in file order, indices of the used files, skipped (index, reason))."""
    by_index: dict[int, np.ndarray] = {}
    skipped: dict[int, str] = {}
    for shard in sorted(Path(shard_dir).glob("shard-*.npz")):
        data = np.load(shard)
        for index, row in zip(data["indices"].tolist(), data["features"], strict=True):
            by_index[index] = row
        skipped.update({int(i): str(r) for i, r in json.loads(str(data["skipped"]))})
    used = sorted(by_index)
    embeddings = np.stack([by_index[i] for i in used]) if used else np.zeros((0, 0), np.float32)
    return embeddings.astype(np.float32), used, sorted(skipped.items())


def embed_files_distributed(
    model: Any,
    image_processor: Any,
    paths: Sequence[str | Path],
    shard_dir: str | Path,
    batch_size: int = 64,
    num_workers: int = 2,
    **trainer_kwargs: Any,
) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """`embed.embed_files` through `Trainer.predict`; `trainer_kwargs`: devices, num_nodes, strategy..."""
    loader = DataLoader(
        ImageFileDataset(paths),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=EmbedCollate(image_processor),
    )
    trainer = pl.Trainer(
        callbacks=[ShardWriter(shard_dir)],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        **trainer_kwargs,
    )
    trainer.predict(ImageEmbedder(model.eval()), dataloaders=loader, return_predictions=False)
    return merge_shards(shard_dir)
