"""LoRA adapters (peft) on CLIP's attention and MLP projections (`model.lora`, see config.ClipLoraConfig).

`add_lora` injects adapters into the chosen towers' encoder blocks in place: the model keeps its class
and its parameter names gain `.base_layer` / `.lora_A.default` / `.lora_B.default`. It composes with
`model.freeze`: peft freezes every base weight, then the base weights the freeze settings had made trainable
train again beside the adapters (`model/freeze=none`: the adapters alone; `model/freeze=linear_probe`: the
adapters, both projections and the logit scale). `merged_copy` folds the adapters into a copy of the weights
(peft `merge_and_unload`), which plain transformers loads (CLIPModel, SiglipModel); the trained model is
untouched.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

from trendgen.errors import TrendgenError
from trendgen.model.families import family_of

log = logging.getLogger(__name__)

TARGETS = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "out_proj": "self_attn"}
TARGETS |= {"fc1": "mlp", "fc2": "mlp"}
TOWERS = {"vision": "vision_model", "text": "text_model"}


def target_pattern(targets: list[str], towers: list[str]) -> str:
    """The peft `target_modules` regex (matched against full module names) for these layers and towers."""
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise TrendgenError(
            f"model.lora.targets={list(targets)}: choose from {', '.join(TARGETS)} "
            "(the attention and MLP projections)"
        )
    bad_towers = [t for t in towers if t not in TOWERS]
    if bad_towers or not towers:
        raise TrendgenError(f"model.lora.towers={list(towers)}: choose vision, text or both")
    layers = "|".join(f"{TARGETS[t]}\\.{t}" for t in dict.fromkeys(targets))
    tower_names = "|".join(TOWERS[t] for t in dict.fromkeys(towers))
    return f"({tower_names})\\.encoder\\.layers\\.\\d+\\.({layers})"


@dataclass
class LoraAdapters:
    """The peft wrapper of a model with adapters (a plain holder, so Lightning does not see it twice)."""

    peft_model: PeftModel

    def merged_copy(self) -> PreTrainedModel:
        """A plain model of the family (CLIPModel, SiglipModel) with the adapters folded into its weights;
        the trained model is unchanged."""
        merged = copy.deepcopy(self.peft_model).merge_and_unload()
        expected = family_of(merged).model_class
        if not isinstance(merged, expected):  # peft returns the base model it wrapped
            raise TypeError(f"merge_and_unload gave {type(merged).__name__}, not a {expected.__name__}")
        return merged

    def save(self, folder: Path) -> Path:
        """The adapter alone (adapter_config.json, adapter_model.safetensors), peft's own format."""
        self.peft_model.save_pretrained(str(folder))
        return folder


def add_lora(model: PreTrainedModel, lora_cfg: Any) -> LoraAdapters | None:
    """Inject the adapters `lora_cfg` asks for into `model` (in place); None when LoRA is off.

    Call after `apply_freeze`: the base parameters it left trainable stay trainable.
    """
    if lora_cfg is None or not lora_cfg.enabled:
        return None
    if lora_cfg.rank < 1:
        raise TrendgenError(f"model.lora.rank={lora_cfg.rank}: must be at least 1")
    pattern = target_pattern(list(lora_cfg.targets), list(lora_cfg.towers))
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    config = LoraConfig(
        r=int(lora_cfg.rank),
        lora_alpha=float(lora_cfg.alpha),
        lora_dropout=float(lora_cfg.dropout),
        target_modules=pattern,
        bias="none",
    )
    peft_model = get_peft_model(model, config)  # wraps `model` and freezes every base weight
    doubled = []
    for name, param in model.named_parameters():
        base_name = name.replace(".base_layer.", ".")
        if base_name in trainable:
            param.requires_grad_(True)
            if base_name != name:
                doubled.append(base_name)
    if doubled:
        log.warning(
            "model.freeze trains %d weights that also carry LoRA adapters (e.g. %s): those layers train in "
            "full; model/freeze=none or linear_probe trains the adapters alone",
            len(doubled),
            doubled[0],
        )
    n_adapter = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("LoRA on %s: %d adapter weights, %d trainable in all", pattern, n_adapter, n_trainable)
    return LoraAdapters(peft_model)


def is_adapter_parameter(name: str) -> bool:
    """Whether a parameter name (of a model `add_lora` changed) belongs to a LoRA adapter."""
    return re.search(r"\.lora_(A|B)\.", name) is not None
