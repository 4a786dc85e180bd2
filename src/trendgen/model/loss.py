"""The contrastive losses over the global batch: CLIP's symmetric InfoNCE and SigLIP's pairwise sigmoid.

Under DDP every rank all-gathers the image and text features of all ranks *with gradients*, scores only its
own rows against every column and offsets its targets by the rows of the ranks before it. Each rank's loss is
weighted by its share of the global rows times the world size, so DDP's mean of the rank gradients is exactly
the gradient of one process on the whole global batch, however the rows are split. A rank whose batch lost
every image (all skipped) still takes part in the gathers and their backward, and adds zero.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from torch import Tensor, nn


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_sizes(n: int, device: torch.device) -> list[int]:
    """The row count of every rank (a collective: every rank must call it); `[n]` outside DDP."""
    if _world()[1] == 1:
        return [n]
    size = torch.tensor([n], device=device)
    sizes = [torch.zeros_like(size) for _ in range(_world()[1])]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def gather_rows(tensor: Tensor, sizes: list[int], with_grad: bool) -> Tensor:
    """Concatenate `tensor` from every rank along dim 0 (ranks may hold different row counts, see `sizes`).

    With `with_grad`, gradients flow back to the rank that owns each row (torch.distributed.nn's all_gather).
    """
    if len(sizes) == 1:
        return tensor
    longest = max(sizes)
    padded = torch.cat([tensor, tensor.new_zeros((longest - tensor.shape[0], *tensor.shape[1:]))])
    if with_grad:
        parts = list(dist_nn.all_gather(padded))
    else:
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])


class ContrastiveLoss(nn.Module):
    """Symmetric image↔text cross-entropy over the global batch.

    With `multi_positive=True`, items whose caption ids are equal are positives for each other: the target of
    a row is uniform over every column that shares its caption id (one-hot when captions are unique).
    Features are expected L2-normalised; `logit_scale` is the already exponentiated temperature.
    """

    def __init__(self, multi_positive: bool = True) -> None:
        super().__init__()
        self.multi_positive = multi_positive

    def targets(self, local_ids: Tensor, all_ids: Tensor, offset: int) -> Tensor:
        """Target distribution [local, global] for the local rows."""
        if self.multi_positive:
            positives = (local_ids[:, None] == all_ids[None, :]).float()
            return positives / positives.sum(dim=1, keepdim=True)
        labels = torch.arange(local_ids.numel(), device=local_ids.device) + offset
        return F.one_hot(labels, num_classes=all_ids.numel()).float()

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor,
        caption_ids: Tensor,
        sizes: list[int] | None = None,
        gather: bool = True,
    ) -> Tensor:
        """This rank's weighted loss; `sizes` (every row count, from `rank_sizes`) saves a collective."""
        rank, world_size = _world() if gather else (0, 1)  # gather=False: this rank's batch alone
        n = caption_ids.numel()
        sizes = [n] if not gather else sizes if sizes is not None else rank_sizes(n, caption_ids.device)
        all_images = gather_rows(image_features, sizes, with_grad=True)
        all_texts = gather_rows(text_features, sizes, with_grad=True)
        all_ids = gather_rows(caption_ids, sizes, with_grad=False)
        if n == 0:  # every image of this rank was skipped: the gathers' backward must run here too; adds zero
            return (all_images.sum() + all_texts.sum() + logit_scale) * 0.0

        logits_per_image = logit_scale * image_features @ all_texts.T  # local images vs every text
        logits_per_text = logit_scale * text_features @ all_images.T  # local texts vs every image
        targets = self.targets(caption_ids, all_ids, offset=sum(sizes[:rank]))

        image_loss = F.cross_entropy(logits_per_image.float(), targets)
        text_loss = F.cross_entropy(logits_per_text.float(), targets)
        return (image_loss + text_loss) / 2 * (world_size * n / sum(sizes))


class SigmoidLoss(nn.Module):
    """SigLIP's pairwise sigmoid loss over the global batch (Zhai et al., 2023), with multi-positive targets.

    Every (image, text) pair is its own binary problem, +1 where the caption ids match (the pair itself;
    with `multi_positive`, every repeat of its caption too), -1 elsewhere: this rank's loss is
    -sum log sigmoid(y (t s + b)) of its images against every rank's texts, over its rows, as open_clip's
    `SigLipLoss` computes it. `logit_scale` is the exponentiated temperature t, `logit_bias` the bias b.

    Under DDP the texts are all-gathered with gradients (torch.distributed.nn) instead of passed round the
    ring of the paper: multi-positive labels need each text's caption id beside it, the gather is one
    collective where the ring takes world size - 1 steps, and at trendgen's batch sizes the gathered texts
    ([global batch, width]) are small. The loss is weighted like `ContrastiveLoss`, so DDP's mean gradient
    is the gradient of one process on the whole batch; with equal rank batches it is open_clip's value.
    """

    def __init__(self, multi_positive: bool = True) -> None:
        super().__init__()
        self.multi_positive = multi_positive

    def labels(self, local_ids: Tensor, all_ids: Tensor, offset: int) -> Tensor:
        """+1 / -1 targets [local, global] of the local images against every text."""
        if self.multi_positive:
            positive = local_ids[:, None] == all_ids[None, :]
        else:
            rows = torch.arange(local_ids.numel(), device=local_ids.device) + offset
            positive = rows[:, None] == torch.arange(all_ids.numel(), device=local_ids.device)[None, :]
        return positive.float() * 2 - 1

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor,
        logit_bias: Tensor,
        caption_ids: Tensor,
        sizes: list[int] | None = None,
        gather: bool = True,
    ) -> Tensor:
        """This rank's weighted loss; `sizes` (every row count, from `rank_sizes`) saves a collective."""
        rank, world_size = _world() if gather else (0, 1)
        n = caption_ids.numel()
        sizes = [n] if not gather else sizes if sizes is not None else rank_sizes(n, caption_ids.device)
        all_texts = gather_rows(text_features, sizes, with_grad=True)
        all_ids = gather_rows(caption_ids, sizes, with_grad=False)
        if n == 0:  # every image of this rank was skipped: the gather's backward must run here too
            return (all_texts.sum() + logit_scale + logit_bias) * 0.0
        logits = (logit_scale * image_features @ all_texts.T + logit_bias).float()
        labels = self.labels(caption_ids, all_ids, offset=sum(sizes[:rank]))
        loss = -F.logsigmoid(labels * logits).sum() / n
        return loss * (world_size * n / sum(sizes))


LOSSES: dict[str, type[nn.Module]] = {"clip": ContrastiveLoss, "siglip": SigmoidLoss}  # `model.loss`
