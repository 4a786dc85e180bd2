"""Gradient caching (Gao et al., 2021): the contrastive loss over a batch larger than memory holds.

`model.contrastive_batch=N` with micro-batches of `data.batch_size`: the features of all N rows are computed
without gradients, the loss and its gradients with respect to those features on all N at once, then each
micro-batch is encoded again with gradients and backpropagated with its rows' cached feature gradients. The
weights' gradients are those of one batch of N (the chain rule, split by rows); only one micro-batch's
activations are alive at a time. The cost is a second forward of every micro-batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cached_backward", "micro_batches"]


def micro_batches(batch: dict[str, Any], size: int) -> list[dict[str, Any]]:
    """The batch's rows in slices of `size` (every tensor with a row per sample sliced; the rest as it is)."""
    rows = int(batch["caption_ids"].numel())
    per_row = [k for k, v in batch.items() if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == rows]
    return [
        {**batch, **{k: batch[k][start : start + size] for k in per_row}} for start in range(0, rows, size)
    ]


def cached_backward(module: Any, batch: dict[str, Any], micro: int, sizes: list[int] | None) -> Tensor:
    """Backpropagate `module.contrastive_loss` over the whole batch, `micro` rows at a time; the loss.

    `module` is a `ClipFineTuner` under manual optimization (`encode_batch`, `contrastive_loss`,
    `manual_backward`); the temperature and bias get their gradients from the loss itself."""
    parts = micro_batches(batch, micro)
    with torch.no_grad():
        encoded = [module.encode_batch(part) for part in parts]
    images = torch.cat([i for i, _ in encoded]).requires_grad_(True)
    texts = torch.cat([t for _, t in encoded]).requires_grad_(True)
    loss = module.contrastive_loss(
        F.normalize(images, dim=-1), F.normalize(texts, dim=-1), batch["caption_ids"], sizes
    )
    module.manual_backward(loss)  # feature gradients, and the temperature's and bias's
    start = 0
    for part in parts:
        part_images, part_texts = module.encode_batch(part)
        rows = slice(start, start + part_images.shape[0])
        surrogate = (part_images * images.grad[rows]).sum() + (part_texts * texts.grad[rows]).sum()
        module.manual_backward(surrogate)
        start = rows.stop
    return loss.detach()
