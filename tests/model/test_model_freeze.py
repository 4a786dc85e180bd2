"""Which parameters train under each `model.freeze` setting, and which get weight decay."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.clip import FREEZE_GEOMETRY
from omegaconf import OmegaConf

from trendgen.config import FreezeConfig
from trendgen.errors import TrendgenError
from trendgen.model.build import random_clip
from trendgen.model.freeze import apply_freeze, trainable_parameter_names
from trendgen.model.module import split_weight_decay

PRESETS = Path(__file__).resolve().parents[2] / "conf" / "model" / "freeze"
GEOMETRY = FREEZE_GEOMETRY


@pytest.fixture
def model():
    return random_clip(GEOMETRY, vocab_size=30)


def preset(name: str) -> FreezeConfig:
    return OmegaConf.merge(OmegaConf.structured(FreezeConfig), OmegaConf.load(PRESETS / f"{name}.yaml"))


def trained_modules(model, freeze) -> set[str]:
    """Trainable parameter names reduced to their module (`vision_model.encoder.layers.2`, `logit_scale`)."""
    apply_freeze(model, freeze)
    modules = set()
    for name in trainable_parameter_names(model):
        parts = name.split(".")
        depth = 4 if parts[1:3] == ["encoder", "layers"] else 2
        modules.add(".".join(parts[:depth]).removesuffix(".weight").removesuffix(".bias"))
    return modules


def test_original_recipe_trains_the_last_vision_block_projections_and_logit_scale(model):
    assert trained_modules(model, preset("original")) == {
        "vision_model.encoder.layers.2",
        "vision_model.post_layernorm",
        "visual_projection",
        "text_projection",
        "logit_scale",
    }


def test_linear_probe_trains_only_the_projections_and_logit_scale(model):
    assert trained_modules(model, preset("linear_probe")) == {
        "visual_projection",
        "text_projection",
        "logit_scale",
    }


def test_full_trains_every_parameter(model):
    apply_freeze(model, preset("full"))
    assert trainable_parameter_names(model) == [name for name, _ in model.named_parameters()]


def test_last_k_blocks_per_tower(model):
    freeze = FreezeConfig(
        vision_trainable_blocks=2, text_trainable_blocks=1, train_projections=False, train_logit_scale=False
    )
    assert trained_modules(model, freeze) == {
        "vision_model.encoder.layers.1",
        "vision_model.encoder.layers.2",
        "vision_model.post_layernorm",
        "text_model.encoder.layers.1",
        "text_model.final_layer_norm",
    }


def test_all_blocks_without_embeddings_keeps_the_embeddings_frozen(model):
    freeze = FreezeConfig(vision_trainable_blocks=-1, text_trainable_blocks=0, train_embeddings=False)
    names = set(trainable_parameter_names(apply_freeze(model, freeze)))
    assert {f"vision_model.encoder.layers.{i}.mlp.fc1.weight" for i in range(3)} <= names
    assert not any("embeddings" in n or "pre_layrnorm" in n or n.startswith("text_model") for n in names)
    with_embeddings = FreezeConfig(vision_trainable_blocks=-1, text_trainable_blocks=0, train_embeddings=True)
    names = set(trainable_parameter_names(apply_freeze(model, with_embeddings)))
    assert {"vision_model.embeddings.patch_embedding.weight", "vision_model.pre_layrnorm.weight"} <= names


def test_more_blocks_than_the_tower_has_trains_the_whole_encoder(model):
    names = trainable_parameter_names(apply_freeze(model, FreezeConfig(vision_trainable_blocks=10)))
    assert {n.split(".")[3] for n in names if ".encoder.layers." in n and n.startswith("vision")} == {
        "0",
        "1",
        "2",
    }


def test_freezing_everything_is_refused(model):
    nothing = FreezeConfig(
        vision_trainable_blocks=0, text_trainable_blocks=0, train_projections=False, train_logit_scale=False
    )
    with pytest.raises(TrendgenError, match="nothing to train"):
        apply_freeze(model, nothing)
    with pytest.raises(TrendgenError, match="-1"):
        apply_freeze(model, FreezeConfig(vision_trainable_blocks=-2))


def test_no_weight_decay_on_biases_norms_embeddings_and_logit_scale(model):
    apply_freeze(model, preset("full"))
    decay, no_decay = split_weight_decay(model)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay}
    assert "logit_scale" in {names[id(p)] for p in no_decay}
    assert not any(n.endswith("bias") or "norm" in n or "embedding" in n for n in decayed - _patch_conv())
    assert "vision_model.encoder.layers.0.self_attn.q_proj.weight" in decayed
    assert "visual_projection.weight" in decayed
    assert len(decay) + len(no_decay) == len(list(model.parameters()))


def _patch_conv() -> set[str]:
    return {"vision_model.embeddings.patch_embedding.weight"}  # a convolution: decays like any matrix
