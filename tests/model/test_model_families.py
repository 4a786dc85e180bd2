"""SigLIP beside CLIP behind one interface: built, trained, frozen, padded and exported as its own library
loads it."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from helpers.clip import MODULE_GEOMETRY, build, trainer
from transformers import AutoModel, AutoProcessor, CLIPModel, SiglipModel

from trendgen.errors import TrendgenError
from trendgen.model.build import load_saved, save_clip
from trendgen.model.families import family_of, random_siglip, tokenize_texts
from trendgen.model.freeze import trainable_parameter_names
from trendgen.model.metrics import image_features, text_features
from trendgen.model.module import ClipFineTuner
from trendgen.model.optim import lr_scale, tower_depths

SIGLIP_GEOMETRY = dataclasses.replace(MODULE_GEOMETRY, projection_dim=MODULE_GEOMETRY.vision_hidden_size)


def siglip(**overrides):
    return build(**{"family": "siglip", "loss": "siglip", "geometry": SIGLIP_GEOMETRY, **overrides})


def test_random_siglip_starts_as_the_paper_and_names_a_bad_width():
    module, _ = siglip()
    model = module.model
    assert isinstance(model, SiglipModel) and family_of(model).name == "siglip"
    assert model.logit_scale.exp().item() == pytest.approx(10.0)
    assert model.logit_bias.item() == pytest.approx(-10.0)
    assert module.logit_bias is None  # the sigmoid loss uses the model's own bias, none is added
    module.loss_bias().backward()  # the loss's bias is the model's parameter
    assert model.logit_bias.grad is not None
    with pytest.raises(
        TrendgenError, match=r"projection_dim=16 must equal model\.geometry\.vision_hidden_size=32"
    ):
        random_siglip(MODULE_GEOMETRY, vocab_size=100)


def test_siglip_captions_are_padded_to_full_length_and_read_alone_or_in_a_batch():
    """SigLIP's text tower pools the last position: a caption's embedding must not depend on the longest
    caption beside it (trimming shared padding, right for CLIP, would move that position)."""
    module, _ = siglip()
    model, tokenizer = module.model.eval(), module.tokenizer
    length = SIGLIP_GEOMETRY.max_text_length
    tokens = tokenize_texts(model, tokenizer, ["a red dress", "a blue striped coat with a belt"], length)
    assert tokens["input_ids"].shape == (2, length)
    alone = tokenize_texts(model, tokenizer, ["a red dress"], length)
    with torch.no_grad():
        together = text_features(model, tokens["input_ids"], tokens["attention_mask"])[0]
        single = text_features(model, alone["input_ids"], alone["attention_mask"])[0]
    torch.testing.assert_close(together, single, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # and read unmasked, as big_vision and open_clip train SigLIP
        unmasked = model.get_text_features(input_ids=tokens["input_ids"]).pooler_output
    torch.testing.assert_close(text_features(model, tokens["input_ids"], tokens["attention_mask"]), unmasked)
    clip = build()[0].model
    assert tokenize_texts(clip, tokenizer, ["a red dress"], length)["input_ids"].shape[1] < length


def test_siglip_freezes_and_groups_its_heads_and_bias_as_clip_does_its_projections():
    module, _ = siglip(
        freeze={"vision_trainable_blocks": 1, "text_trainable_blocks": 0, "train_embeddings": False}
    )
    names = set(trainable_parameter_names(module.model))
    assert "logit_bias" in names and "logit_scale" in names
    assert {
        "vision_model.head.probe",
        "text_model.head.weight",
        "vision_model.post_layernorm.weight",
    } <= names
    assert not any(n.startswith("vision_model.encoder.layers.0.") for n in names)
    assert not any(n.startswith("text_model.encoder.") or "embeddings" in n for n in names)
    depths = tower_depths(module.model)
    groups = {"vision": 1.0, "text": 1.0, "projection": 0.5, "logit_scale": 3.0}
    lr_groups = type("LrGroups", (), groups)
    assert lr_scale("vision_model.head.mlp.fc1.weight", depths, lr_groups, 1.0) == ("projection", 0.5)
    assert lr_scale("logit_bias", depths, lr_groups, 1.0) == ("logit_scale", 3.0)


def test_a_checkpoint_temperature_above_the_clamp_is_kept():
    module, _ = siglip()
    with torch.no_grad():
        module.model.logit_scale.fill_(math.log(120.0))  # pretrained SigLIPs end near 110-120
    again = ClipFineTuner(module.model, module.tokenizer, module.cfg, [])
    again.on_train_batch_end(None, None, 0)
    assert again.model.logit_scale.exp().item() == pytest.approx(120.0)
    with torch.no_grad():
        module.model.logit_scale.fill_(math.log(500.0))
    again.on_train_batch_end(None, None, 0)
    assert again.model.logit_scale.exp().item() == pytest.approx(120.0)


def test_siglip_under_the_softmax_loss_freezes_its_unused_bias():
    module, _ = siglip(loss="clip")
    assert not module.model.logit_bias.requires_grad and module.loss_bias() is None


def test_trained_siglip_exports_a_folder_transformers_loads_with_the_same_outputs(tmp_path):
    module, data = siglip()
    trainer(max_steps=2).fit(module, datamodule=data)
    model = module.export_model().eval()
    save_clip(tmp_path / "model", model, module.tokenizer, data.image_processor)

    loaded = AutoModel.from_pretrained(tmp_path / "model").eval()
    processor = AutoProcessor.from_pretrained(tmp_path / "model")
    assert isinstance(loaded, SiglipModel) and type(processor).__name__ == "SiglipProcessor"
    batch = next(iter(data.val_dataloader()))
    tokens = processor.tokenizer(
        ["a red striped dress"], padding="max_length", max_length=16, return_tensors="pt"
    )
    with torch.no_grad():
        for a, b in ((model, loaded), (model, load_saved(tmp_path / "model")[0].eval())):
            torch.testing.assert_close(
                image_features(a, batch["pixel_values"]), image_features(b, batch["pixel_values"])
            )
            ids, mask = tokens["input_ids"], tokens["attention_mask"]
            torch.testing.assert_close(text_features(a, ids, mask), text_features(b, ids, mask))
    assert not isinstance(loaded, CLIPModel)


def test_an_unknown_family_or_a_folder_of_another_model_is_one_line(tmp_path):
    from transformers import BertConfig, BertModel

    with pytest.raises(TrendgenError, match=r"model\.family must be one of clip, siglip, not 'vit'"):
        siglip(family="vit")
    BertModel(
        BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    ).save_pretrained(tmp_path / "bert")
    with pytest.raises(TrendgenError, match="a 'bert' model: trendgen trains clip, siglip models"):
        load_saved(tmp_path / "bert")
