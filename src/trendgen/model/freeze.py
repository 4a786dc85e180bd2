"""Which parts of CLIP train (`model.freeze`, see conf/model/freeze/).

Per tower, `*_trainable_blocks = k` trains the last k encoder blocks and the tower's output norm (it sits on
top of them); 0 trains none of the tower; -1 trains every block, and with `train_embeddings` also the patch,
class, token and position embeddings and the vision pre-norm. `train_projections` and `train_logit_scale`
cover the two heads (CLIP's projections; SigLIP's attention-pooling and text heads) and the temperature
(with SigLIP's bias).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import PreTrainedModel

from trendgen.errors import TrendgenError
from trendgen.model.families import family_of


def _tower_modules(
    blocks: nn.ModuleList, output_norm: nn.Module, embeddings: list[nn.Module], k: int, train_embeddings: bool
) -> list[nn.Module]:
    if k < -1:
        raise TrendgenError(f"trainable blocks must be -1 (all), 0 (none) or a positive count, got {k}")
    if k == 0:
        return []
    n_blocks = len(blocks) if k == -1 else min(k, len(blocks))
    modules = [*list(blocks)[len(blocks) - n_blocks :], output_norm]
    if k == -1 and train_embeddings:
        modules += embeddings
    return modules


def apply_freeze(model: PreTrainedModel, freeze: Any, allow_empty: bool = False) -> PreTrainedModel:
    """Set `requires_grad` of every parameter as `freeze` (a FreezeConfig) says; returns the model.

    A setting that trains nothing is refused unless `allow_empty` (LoRA adapters will train).
    """
    vision, text, family = model.vision_model, model.text_model, family_of(model)
    trainable = _tower_modules(
        vision.encoder.layers,
        vision.post_layernorm,
        family.vision_embeddings(model),
        freeze.vision_trainable_blocks,
        freeze.train_embeddings,
    )
    trainable += _tower_modules(
        text.encoder.layers,
        text.final_layer_norm,
        [text.embeddings],
        freeze.text_trainable_blocks,
        freeze.train_embeddings,
    )
    if freeze.train_projections:
        trainable += family.heads(model)

    model.requires_grad_(False)
    for module in trainable:
        module.requires_grad_(True)
    model.logit_scale.requires_grad_(bool(freeze.train_logit_scale))
    if getattr(model, "logit_bias", None) is not None:
        model.logit_bias.requires_grad_(bool(freeze.train_logit_scale))
    if not allow_empty and not any(p.requires_grad for p in model.parameters()):
        raise TrendgenError(
            "model.freeze leaves nothing to train (model/freeze=none needs model.lora.enabled=true)"
        )
    return model


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters that will be updated."""
    return [name for name, param in model.named_parameters() if param.requires_grad]
