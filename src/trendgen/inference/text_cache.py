"""Caption embeddings for the describe stage: batched text forwards, an on-disk cache, prompt ensembles."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trendgen.errors import TrendgenError
from trendgen.identity import stable_hash
from trendgen.inference.clip_forward import autocast_for, features_of, pick_device
from trendgen.model.families import text_inputs, tokenize_texts

log = logging.getLogger(__name__)


def text_max_length(model: Any, tokenizer: Any) -> int:
    positions = int(model.config.text_config.max_position_embeddings)
    return min(positions, int(getattr(tokenizer, "model_max_length", positions) or positions))


@torch.inference_mode()
def embed_texts(
    model: Any, tokenizer: Any, texts: list[str], batch_size: int = 256, precision: str = "32"
) -> np.ndarray:
    """L2-normalised float32 text embeddings, `batch_size` captions per forward (`precision`: autocast)."""
    device = pick_device()
    model.eval().to(device)
    max_length = text_max_length(model, tokenizer)
    chunks = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenize_texts(model, tokenizer, texts[start : start + batch_size], max_length)
        with autocast_for(device, precision):
            ids, mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
            out = model.get_text_features(**text_inputs(model, ids, mask))
        chunks.append(torch.nn.functional.normalize(features_of(out).float(), dim=-1).cpu())
    return torch.cat(chunks).numpy().astype(np.float32, copy=False)


class TextEmbeddingCache:
    """Text -> embedding for one model, kept in one .npz file; only unseen texts go through the model."""

    def __init__(self, cache_dir: str | Path, model_identity: Any, embed: Callable[[list[str]], np.ndarray]):
        self.path = (
            Path(str(cache_dir)).expanduser() / "caption_embeddings" / f"{stable_hash(model_identity)}.npz"
        )
        self.embed = embed
        self.table: dict[str, np.ndarray] = {}
        self.embedded = 0
        if self.path.is_file():
            try:
                with np.load(self.path) as cached:
                    self.table = dict(zip(cached["texts"].tolist(), cached["embeddings"], strict=True))
            except (OSError, ValueError, KeyError):
                log.warning("caption cache %s unreadable: starting afresh", self.path)

    def has_all(self, texts: list[str]) -> bool:
        return all(t in self.table for t in texts)

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.table))
        if missing:
            self.table.update(zip(missing, self.embed(missing), strict=True))
            self.embedded += len(missing)
        return np.stack([self.table[t] for t in texts]).astype(np.float32)

    def save(self) -> None:
        if not self.embedded:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.stem}.{os.getpid()}.tmp.npz")
        texts = list(self.table)
        np.savez(tmp, texts=np.array(texts), embeddings=np.stack([self.table[t] for t in texts]))
        os.replace(tmp, self.path)


def ensembled(
    embed: Callable[[list[str]], np.ndarray], templates: list[str]
) -> Callable[[list[str]], np.ndarray]:
    """`embed` over a prompt ensemble: each text as the normalised mean of its normalised embeddings in every
    template (`{caption}` marks where the text goes); `embed` itself when there are no templates."""
    templates = list(templates or [])
    if not templates:
        return embed
    wrong = [t for t in templates if "{caption}" not in t]
    if wrong:
        raise TrendgenError(f"captions.templates: each template needs {{caption}}, not {wrong}")

    def embed_ensemble(texts: list[str]) -> np.ndarray:
        rows = embed([t.replace("{caption}", text) for text in texts for t in templates])
        mean = rows.reshape(len(texts), len(templates), -1).mean(axis=1)
        return (mean / np.linalg.norm(mean, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)

    return embed_ensemble
