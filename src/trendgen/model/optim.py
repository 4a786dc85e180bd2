"""The optimiser's parameter groups: weight-decay split, a learning rate per part of CLIP, layer-wise decay.

`model.lr_groups` multiplies `model.optimizer.lr` per part (vision tower, text tower, projections or SigLIP's
heads, logit scale with SigLIP's bias), so a sweep over `model.optimizer.lr` keeps the ratios.
`model.layer_decay` (LLRD) scales each tower
over its depth: the last encoder block (and the tower's output norm above it) gets the tower's rate, each
block below it one more factor of `layer_decay`, and the embeddings (with the vision pre-norm) the lowest,
`layer_decay ** n_blocks`. Each distinct rate is split again into a decayed and a non-decayed group
(`split_weight_decay`'s rule). Frozen parameters are in no group. The LR schedule scales every group alike.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from trendgen.errors import TrendgenError

_BLOCK = re.compile(r"(vision_model|text_model)\.encoder\.layers\.(\d+)\.")
_TOWER = re.compile(r"(vision_model|text_model)\.")
_PROJECTION = re.compile(r"(visual_projection|text_projection|vision_model\.head|text_model\.head)\.")
_TOWER_GROUP = {"vision_model": "vision", "text_model": "text"}


def no_weight_decay_ids(model: nn.Module) -> set[int]:
    """Parameters that take no weight decay: biases, norms, class embedding, logit scale and bias (below
    2-D), token and position embeddings, and SigLIP's pooling probe (its class-embedding counterpart)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    probes = {id(p) for n, p in model.named_parameters() if n.endswith(".probe")}
    return {id(p) for p in model.parameters() if p.ndim < 2 or id(p) in embeddings | probes}


def tower_depths(model: nn.Module) -> dict[str, int]:
    """Number of encoder blocks per tower prefix (`vision_model`, `text_model`), read from parameter names."""
    depths: dict[str, int] = {}
    for name, _ in model.named_parameters():
        if match := _BLOCK.search(name):
            depths[match.group(1)] = max(depths.get(match.group(1), 0), int(match.group(2)) + 1)
    return depths


def lr_scale(name: str, depths: dict[str, int], lr_groups: Any, layer_decay: float) -> tuple[str, float]:
    """(label, multiplier of the base LR) of the parameter `name`."""
    if name.split(".")[-1] in ("logit_scale", "logit_bias"):
        return "logit_scale", float(lr_groups.logit_scale)
    if _PROJECTION.search(name):
        return "projection", float(lr_groups.projection)
    tower = _TOWER.search(name)
    if tower is None:
        raise TrendgenError(f"parameter {name!r} is in no LR group (vision, text, projection, logit_scale)")
    group, n_blocks = _TOWER_GROUP[tower.group(1)], depths.get(tower.group(1), 0)
    block = _BLOCK.search(name)
    if block is not None:
        steps_below_top = n_blocks - 1 - int(block.group(2))
        label = f"{group}.block{block.group(2)}"
    elif ".embeddings." in name or "pre_layrnorm" in name:
        steps_below_top, label = n_blocks, f"{group}.embeddings"
    else:  # the output norm sits on the last block
        steps_below_top, label = 0, f"{group}.head"
    return label, float(getattr(lr_groups, group)) * float(layer_decay) ** steps_below_top


def parameter_groups(
    model: nn.Module, base_lr: float, lr_groups: Any, layer_decay: float
) -> list[dict[str, Any]]:
    """Optimiser groups of the trainable parameters of `model` (a CLIPModel, possibly wrapped).

    With every multiplier 1 and no layer decay this is the plain split: `[{params: decayed}, {params: rest,
    weight_decay: 0}]`. Otherwise each group carries `lr` (absolute) and a `name` ("vision.block3", ...,
    with "/no_decay" for the non-decayed half), which Lightning's LearningRateMonitor logs under.
    """
    if not 0.0 < layer_decay <= 1.0:
        raise TrendgenError(f"model.layer_decay={layer_decay} must be in (0, 1] (1: no layer-wise decay)")
    for part in ("vision", "text", "projection", "logit_scale"):
        if float(getattr(lr_groups, part)) < 0:
            raise TrendgenError(f"model.lr_groups.{part}={getattr(lr_groups, part)} must be >= 0")
    plain = layer_decay == 1.0 and all(
        float(getattr(lr_groups, p)) == 1.0 for p in ("vision", "text", "projection", "logit_scale")
    )
    no_decay, depths = no_weight_decay_ids(model), tower_depths(model)
    buckets: dict[tuple[str, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        label, scale = ("all", 1.0) if plain else lr_scale(name, depths, lr_groups, layer_decay)
        decays = id(param) not in no_decay
        key = (label, decays)
        if key not in buckets:
            group: dict[str, Any] = {"params": []}
            if not plain:
                group.update(name=label if decays else f"{label}/no_decay", lr=base_lr * scale)
            if not decays:
                group["weight_decay"] = 0.0
            buckets[key] = group
        buckets[key]["params"].append(param)
    groups = list(buckets.values())
    return sorted(groups, key=lambda g: "weight_decay" in g) if plain else groups  # plain: [decay, no_decay]
