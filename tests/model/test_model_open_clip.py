"""open_clip checkpoints read into a CLIPModel (a SigLIP: a SiglipModel) and written back, checked against
open_clip's own outputs.

tests/fixtures/open_clip_tiny[_siglip] were made by open_clip 3.3.0 itself
(scripts/peers/open_clip_fixture.py): a tiny ViT CLIP's folder (and a tiny SigLIP's: timm trunk, attention
pooling, bias), the preprocessing of a photo and the image and text features open_clip computes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers.clip import build, trainer
from omegaconf import OmegaConf
from PIL import Image
from safetensors.torch import load_file

from trendgen.errors import TrendgenError
from trendgen.generator.parts import load_text_tower
from trendgen.model.build import load_clip, load_saved, save_clip
from trendgen.model.open_clip_checkpoint import read_checkpoint
from trendgen.model.open_clip_format import check_supported
from trendgen.model.tokenizer import train_caption_tokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE = FIXTURES / "open_clip_tiny"
BOTH = pytest.mark.parametrize("fixture", ["open_clip_tiny", "open_clip_tiny_siglip"])
CAPTIONS = ["a red floral dress", "blue denim jacket", "black leather boots", "white cotton shirt"]


def _with_tokenizer(tmp_path: Path, fixture: str = "open_clip_tiny") -> Path:
    """The fixture folder plus a tokenizer's files (what trendgen saves beside open_clip's)."""
    folder = tmp_path / fixture
    shutil.copytree(FIXTURES / fixture, folder)
    train_caption_tokenizer(CAPTIONS, vocab_size=300, model_max_length=16).save_pretrained(folder)
    return folder


def _features(model, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        image = model.get_image_features(pixel_values=images)
        text = model.get_text_features(input_ids=tokens, attention_mask=torch.ones_like(tokens))
    image = getattr(image, "pooler_output", image)
    return image, getattr(text, "pooler_output", text)


@BOTH
def test_open_clip_checkpoint_gives_open_clips_features_and_preprocessing(tmp_path, fixture):
    expected = json.loads((FIXTURES / fixture / "expected.json").read_text())
    model, _tokenizer, processor = load_saved(_with_tokenizer(tmp_path, fixture))
    assert type(model).__name__ == ("SiglipModel" if fixture.endswith("siglip") else "CLIPModel")
    images, tokens = torch.tensor(expected["images"]), torch.tensor(expected["tokens"])
    image, text = _features(model.eval(), images, tokens)
    assert torch.allclose(image, torch.tensor(expected["image_features"]), atol=1e-5)
    assert torch.allclose(text, torch.tensor(expected["text_features"]), atol=1e-5)  # argmax / last pooling
    assert float(model.logit_scale) == pytest.approx(expected["logit_scale"])
    if expected["logit_bias"] is not None:
        assert float(model.logit_bias) == pytest.approx(expected["logit_bias"])
    photo = Image.open(FIXTURES / fixture / "photo.png").convert("RGB")
    pixels = processor(images=photo, return_tensors="pt")["pixel_values"][0]
    assert torch.allclose(pixels, torch.tensor(expected["pixels"]), atol=1e-5)


@BOTH
def test_saved_folder_is_open_clips_layout_and_reloads_the_same(tmp_path, fixture):
    model, tokenizer, processor = load_saved(_with_tokenizer(tmp_path, fixture))
    with torch.no_grad():  # a "trained" change that must survive the round trip
        model.logit_scale.add_(0.5)
    out = save_clip(tmp_path / "model", model, tokenizer, processor)
    original = load_file(FIXTURES / fixture / "open_clip_model.safetensors")
    saved = load_file(out / "open_clip_model.safetensors")
    assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in original.items()}
    assert all(torch.equal(saved[k], original[k]) for k in original if k != "logit_scale")
    assert float(saved["logit_scale"]) == pytest.approx(float(original["logit_scale"]) + 0.5)
    text_cfg = json.loads((out / "open_clip_config.json").read_text())["model_cfg"]["text_cfg"]
    assert text_cfg["vocab_size"] == 1000
    again, _, _ = load_saved(out)
    expected = json.loads((FIXTURES / fixture / "expected.json").read_text())
    images, tokens = torch.tensor(expected["images"]), torch.tensor(expected["tokens"])
    for a, b in zip(_features(model, images, tokens), _features(again, images, tokens), strict=True):
        assert torch.equal(a, b)
    encoder, _ = load_text_tower(str(out))  # the pixel generator's condition: the same text tower
    with torch.no_grad():
        output = encoder(input_ids=tokens)
    embeds = output.pooler_output if fixture.endswith("siglip") else output.text_embeds  # SigLIP: its head's
    torch.testing.assert_close(embeds, _features(model, images, tokens)[1])


def test_random_weights_pool_the_caption_tokenizers_end_token(tmp_path):
    cfg = OmegaConf.create(
        {"library": "open_clip", "name_or_path": f"local-dir:{FIXTURE}", "pretrained": False}
    )
    model, tokenizer, _ = load_clip(cfg, captions_for_tokenizer=CAPTIONS)
    assert model.config.text_config.vocab_size == len(tokenizer)
    out = save_clip(tmp_path / "model", model, tokenizer, _)
    text_cfg = json.loads((out / "open_clip_config.json").read_text())["model_cfg"]["text_cfg"]
    assert (text_cfg["pool_type"], text_cfg["eos_id"]) == ("eos", tokenizer.eos_token_id)
    ids = tokenizer(["red dress", "red dress boots boots"], padding="max_length", return_tensors="pt")
    with torch.no_grad():  # the same caption pools the same state whatever follows its end token
        hidden = model.text_model(
            input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]
        ).pooler_output
        longer = tokenizer(["red dress"], padding="max_length", return_tensors="pt")["input_ids"]
        longer[0, 4:] = ids["input_ids"][1, 4:]  # what follows the end token changes, the caption does not
        pooled = model.text_model(input_ids=longer).pooler_output
    assert torch.allclose(hidden[0], pooled[0], atol=1e-6)


@BOTH
def test_lora_training_exports_open_clips_folder_with_the_trained_outputs(tmp_path, fixture):
    source = _with_tokenizer(tmp_path, fixture)
    siglip = {"loss": "siglip"} if fixture.endswith("siglip") else {}
    module, data = build(
        library="open_clip",
        name_or_path=f"local-dir:{source}",
        pretrained=True,
        lora={"enabled": True},
        **siglip,
    )
    before = load_file(source / "open_clip_model.safetensors")
    trainer(max_steps=2).fit(module, datamodule=data)
    model = module.export_model().eval()  # LoRA merged into a plain CLIPModel
    out = save_clip(tmp_path / "model", model, module.tokenizer, data.image_processor)
    saved = load_file(out / "open_clip_model.safetensors")
    assert set(saved) == set(before)  # open_clip's names; the vocabulary is the captions' own
    again, tokenizer, _ = load_saved(out)
    batch = next(iter(data.val_dataloader()))
    tokens = tokenizer(["a red striped dress"], padding="max_length", return_tensors="pt")
    assert not torch.equal(saved["logit_scale"], before["logit_scale"])  # it trained
    for a, b in zip(
        _features(model, batch["pixel_values"], tokens["input_ids"]),
        _features(again.eval(), batch["pixel_values"], tokens["input_ids"]),
        strict=True,
    ):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("fixture", "change", "key"),
    [
        ("open_clip_tiny", {"init_logit_bias": -10}, "init_logit_bias"),
        (
            "open_clip_tiny",
            {"vision_cfg": {"timm_model_name": "convnext_base"}},
            "vision_cfg.timm_model_name",
        ),
        ("open_clip_tiny", {"text_cfg": {"proj_bias": True}}, "text_cfg.proj_bias"),
        ("open_clip_tiny", {"vision_cfg": {"attentional_pool": True}}, "vision_cfg.attentional_pool"),
        ("open_clip_tiny", {"mystery": 1}, "mystery"),
        ("open_clip_tiny_siglip", {"text_cfg": {"pool_type": "argmax"}}, "text_cfg.pool_type"),
        ("open_clip_tiny_siglip", {"vision_cfg": {"timm_pool": "avg"}}, "vision_cfg.timm_pool"),
        ("open_clip_tiny_siglip", {"text_cfg": {"ls_init_value": 0.1}}, "text_cfg.ls_init_value"),
    ],
)
def test_towers_it_cannot_convert_are_one_line_naming_the_key(fixture, change, key):
    cfg = json.loads((FIXTURES / fixture / "open_clip_config.json").read_text())["model_cfg"]
    for name, value in change.items():
        cfg[name] = cfg[name] | value if isinstance(value, dict) else value
    with pytest.raises(TrendgenError, match=f"{key}="):
        check_supported(cfg, "test")


def test_a_torn_weights_file_is_one_line(tmp_path):
    folder = _with_tokenizer(tmp_path)
    (folder / "open_clip_model.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(TrendgenError, match="unreadable open_clip weights"):
        load_saved(folder)


@BOTH
def test_weights_missing_a_tensor_or_holding_an_unknown_one_are_one_line(tmp_path, fixture):
    from safetensors.torch import save_file

    folder = _with_tokenizer(tmp_path, fixture)
    weights = load_file(folder / "open_clip_model.safetensors")
    save_file(
        {k: v for k, v in weights.items() if k != "logit_scale"}, folder / "open_clip_model.safetensors"
    )
    with pytest.raises(TrendgenError, match="its weights lack 'logit_scale'"):
        load_saved(folder)
    save_file(weights | {"visual.extra": torch.zeros(1)}, folder / "open_clip_model.safetensors")
    with pytest.raises(TrendgenError, match=r"weights the converter does not know: 'visual\.extra'"):
        load_saved(folder)


def test_an_unknown_library_is_one_line():
    cfg = OmegaConf.create({"library": "keras", "name_or_path": "x", "pretrained": True})
    with pytest.raises(TrendgenError, match=r"model\.library must be transformers or open_clip, not 'keras'"):
        load_clip(cfg)


def test_unknown_name_and_tag_are_one_line():
    with pytest.raises(TrendgenError, match="not an open_clip model"):
        read_checkpoint("ViT-Z-99", None, None, pretrained=True)
    with pytest.raises(TrendgenError, match="pretrained_tag='nope' for ViT-B-32: one of laion2b_s34b_b79k"):
        read_checkpoint("ViT-B-32", "nope", None, pretrained=True)
