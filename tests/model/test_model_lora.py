"""LoRA (peft) on the CLIP towers: what trains, that the base stays put, and the merged export."""

from __future__ import annotations

import pytest
import torch
from helpers.clip import build, trainer
from transformers import CLIPModel

from trendgen.errors import TrendgenError
from trendgen.model.build import save_clip
from trendgen.model.lora import is_adapter_parameter
from trendgen.model.metrics import image_features, text_features

torch.set_num_threads(1)

BASE_FROZEN = {
    "vision_trainable_blocks": 0,
    "text_trainable_blocks": 0,
    "train_projections": False,
    "train_logit_scale": False,
    "train_embeddings": False,
}  # conf/model/freeze/none.yaml
LORA = {"enabled": True, "rank": 4, "alpha": 8.0}
FAST = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-2, "weight_decay": 0.1}


def trainable(module) -> list[str]:
    return [name for name, param in module.model.named_parameters() if param.requires_grad]


def fit(module, datamodule, steps: int = 4) -> None:
    trainer(max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0).fit(module, datamodule=datamodule)


def test_a_lora_run_trains_only_adapters_and_leaves_the_base_bit_identical():
    module, datamodule = build(freeze=BASE_FROZEN, lora=LORA, optimizer=FAST)
    names = trainable(module)
    assert names and all(is_adapter_parameter(n) for n in names)
    # every targeted projection of both towers carries an A and a B matrix: 6 layers x 2 blocks x 2 towers
    assert len(names) == 6 * 2 * 2 * 2
    assert {n.split(".")[0] for n in names} == {"vision_model", "text_model"}
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    fit(module, datamodule)
    after = dict(module.model.named_parameters())
    for name, value in before.items():
        if is_adapter_parameter(name):
            continue
        assert torch.equal(after[name], value), f"base weight {name} changed"
    changed_b = [n for n in names if ".lora_B." in n and not torch.equal(after[n], before[n])]
    assert changed_b, "the adapters did not train (lora_B still zero)"


def test_the_merged_export_loads_in_plain_transformers_with_the_adapted_outputs(tmp_path):
    module, datamodule = build(freeze=BASE_FROZEN, lora=LORA, optimizer=FAST)
    base = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    fit(module, datamodule)
    save_clip(tmp_path, module.export_model(), module.tokenizer, datamodule.image_processor)
    loaded = CLIPModel.from_pretrained(tmp_path).eval()
    assert not any("lora" in n for n, _ in loaded.named_parameters())
    adapted = module.model.eval()
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tokens = module.tokenizer(["a red striped dress", "a blue coat"], padding=True, return_tensors="pt")
    with torch.no_grad():
        for fn, args in (
            (image_features, (pixels,)),
            (text_features, (tokens["input_ids"], tokens["attention_mask"])),
        ):
            expected, got = fn(adapted, *args), fn(loaded, *args)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    # the merge really moved the weights: the export is not the untouched base
    merged_q = loaded.vision_model.encoder.layers[0].self_attn.q_proj.weight
    assert not torch.equal(merged_q, base["vision_model.encoder.layers.0.self_attn.q_proj.base_layer.weight"])
    # and the model in training keeps its adapters (the merge ran on a copy)
    assert any(is_adapter_parameter(n) for n, _ in module.model.named_parameters())


def test_lora_composes_with_the_freeze_preset_and_picks_its_tower():
    linear_probe = {**BASE_FROZEN, "train_projections": True, "train_logit_scale": True}
    module, _ = build(freeze=linear_probe, lora={**LORA, "towers": ["text"], "targets": ["q_proj", "v_proj"]})
    names = trainable(module)
    base = sorted(n for n in names if not is_adapter_parameter(n))
    assert base == [
        "logit_scale", "text_projection.weight", "visual_projection.weight",
    ]  # fmt: skip
    adapters = [n for n in names if is_adapter_parameter(n)]
    assert adapters and all(n.startswith("text_model.") for n in adapters)
    assert {n.split(".")[-4] for n in adapters} == {"q_proj", "v_proj"}


def test_bad_lora_settings_are_one_line_errors():
    with pytest.raises(TrendgenError, match=r"model\.lora\.targets"):
        build(freeze=BASE_FROZEN, lora={**LORA, "targets": ["query"]})
    with pytest.raises(TrendgenError, match=r"model\.lora\.towers"):
        build(freeze=BASE_FROZEN, lora={**LORA, "towers": ["audio"]})
    with pytest.raises(TrendgenError, match="nothing to train"):
        build(freeze=BASE_FROZEN)
