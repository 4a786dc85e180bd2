"""Multi-field training (`data.fields`): one contrastive term per product field beside the caption's, as in
Marqo's Generalized Contrastive Learning.

Every term scores the batch's images against one kind of text: the captions ("a red striped dress"), or one
field's texts ("red"; "striped"; "dress"). Each uses the run's objective (`model.loss`, the same temperature
and bias), and equal texts are positives of one another, so every red garment of the global batch is a
positive for "red". A row without a text for a field (a replayed row) sits out that field's term. The loss is
the weighted mean of the terms (`data.fields` gives the weights; the caption's is 1 unless given), so its
scale stays that of one term; each term is logged as `train/loss/<field>`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from trendgen.config.data import CAPTION_FIELD as CAPTION
from trendgen.model.loss import rank_sizes
from trendgen.model.metrics import distinct_text_features

__all__ = ["multi_field_loss"]

# (unit images, unit texts, caption ids, rows per rank) -> the term
TermLoss = Callable[[Tensor, Tensor, Tensor, list[int]], Tensor]


def multi_field_loss(
    model: Any,
    weights: Mapping[str, float],
    images: Tensor,
    captions: Tensor,
    batch: dict[str, Any],
    sizes: list[int],
    term_loss: TermLoss,
) -> tuple[Tensor, dict[str, Tensor]]:
    """(weighted mean of the terms, each term) for unit image and caption features of `batch`; `sizes`: the
    batch's rows per rank. Each field term gathers its own row counts (a collective, in the same order on
    every rank)."""
    fields = batch.get("fields", {})
    terms: dict[str, Tensor] = {}
    for name in weights:
        if name == CAPTION:
            terms[name] = term_loss(images, captions, batch["caption_ids"], sizes)
            continue
        part = fields[name]
        keep = part["present"]
        field_sizes = rank_sizes(int(keep.sum()), images.device)
        if sum(field_sizes) == 0:  # no rank has this field in this step: a zero that reaches the towers
            terms[name] = (images.sum() + captions.sum()) * 0.0
            continue
        if keep.any():
            texts = F.normalize(distinct_text_features(model, part), dim=-1)[keep]
        else:  # this rank has no row with the field: 0 rows, tied to the graph, not a 0-row tower forward
            texts = captions[keep]
        terms[name] = term_loss(images[keep], texts, part["caption_ids"][keep], field_sizes)
    total = sum(weights[name] * loss for name, loss in terms.items()) / sum(weights.values())
    return total, terms  # type: ignore[return-value]
