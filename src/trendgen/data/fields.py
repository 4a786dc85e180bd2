"""Multi-field data (`data.fields`): an item's several texts (garment, colour, pattern, ...), each with its
own contrastive term and weight beside the caption's, as Marqo's Generalized Contrastive Learning trains.

A dataset says which fields it has (`CaptionDataset.fields`: the synthetic garments give garment, colour and
pattern). Each field's texts join the caption table, so a batch carries, per field, the table row of every
sample's text and its tokens: equal rows are equal texts, which the loss treats as positives (every red
garment of a batch is a positive for "red"). Evaluation splits carry every field the dataset has, for the
facet ranking tasks; the training split only the fields `data.fields` trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from trendgen.config.data import CAPTION_FIELD as CAPTION
from trendgen.data.base import CaptionDataset, ConcatCaptionDataset
from trendgen.errors import TrendgenError

__all__ = ["CAPTION", "check_fields", "field_batch", "field_weights"]


def field_weights(fields: Mapping[str, Any] | None) -> dict[str, float]:
    """{term: weight} from `data.fields`, the caption's term first (weight 1 unless given); empty when
    `data.fields` is empty (the caption alone, the plain objective)."""
    if not fields:
        return {}
    try:
        weights = {CAPTION: 1.0, **{str(k): float(v) for k, v in fields.items()}}
    except (AttributeError, TypeError, ValueError):
        raise TrendgenError(
            f"data.fields={fields}: give a mapping of field to weight, e.g. {{color: 1, pattern: 1}}"
        ) from None
    bad = {k: v for k, v in weights.items() if not v >= 0}
    if bad or not any(weights.values()):
        raise TrendgenError(f"data.fields={dict(fields)}: weights must be >= 0, at least one above 0")
    return {name: w for name, w in weights.items() if w > 0}


def check_fields(dataset: CaptionDataset, names: list[str]) -> None:
    """Every named field exists in `dataset` and every row has a text for it (replayed rows, from a later
    part of a concatenation, aside: they train the caption term only); one line otherwise."""
    for name in names:
        if name == CAPTION:
            continue
        fields = getattr(dataset, "fields", {})  # a streamed split has none
        if name not in fields:
            have = ", ".join(fields) or "none"
            where = f"the {getattr(dataset, 'name', 'streamed')} {getattr(dataset, 'split', 'train')} split"
            raise TrendgenError(f"data.fields.{name}: {where} has no field {name!r} (its fields: {have})")
        own = [
            i
            for i in range(len(dataset))
            if not isinstance(dataset, ConcatCaptionDataset) or not dataset.part_of(i)
        ]
        missing = sum(1 for i in own if not fields[name][i])
        if missing:
            raise TrendgenError(
                f"data.fields.{name}: {missing} of {len(own)} {dataset.split} items have no {name}"
            )


def field_batch(
    fields: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    index: torch.Tensor,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
) -> dict[str, dict[str, torch.Tensor]]:
    """Per field, the batch's rows (`index`) of `fields[name]` = (caption-table row of each sample's text,
    whether it has one): `caption_ids`, the tokens, and `present`."""
    out = {}
    for name, (ids, present) in fields.items():
        rows = ids[index]
        out[name] = {
            "caption_ids": rows,
            "input_ids": input_ids[rows],
            "attention_mask": mask[rows],
            "present": present[index],
        }
    return out
