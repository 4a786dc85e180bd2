"""Building CLIP from a geometry, saving it as a Hugging Face folder and loading it back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from transformers import AutoProcessor, CLIPModel
from transformers.activations import QuickGELUActivation

from trendgen.config import ClipGeometry, ModelConfig
from trendgen.errors import TrendgenError
from trendgen.model.activations import QuickGELU
from trendgen.model.build import load_clip, load_saved, save_clip
from trendgen.model.metrics import image_features, text_features

CAPTIONS = ["a red striped dress", "a blue plain coat", "a photo of a dress", "a photo of a coat"]


def tiny_cfg(**geometry) -> ModelConfig:
    base = dict(
        image_size=24, patch_size=8, vision_hidden_size=32, vision_layers=2, vision_heads=2,
        vision_intermediate_size=64, text_hidden_size=32, text_layers=2, text_heads=2,
        text_intermediate_size=64, projection_dim=16, max_text_length=12,
    )  # fmt: skip
    base.update(geometry)
    cfg = OmegaConf.structured(ModelConfig)
    cfg.merge_with({"name_or_path": "tiny", "pretrained": False, "geometry": ClipGeometry(**base)})
    return cfg


def embed(model, tokenizer, image_processor, images, texts):
    pixels = image_processor(images=images, return_tensors="pt")["pixel_values"]
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        return image_features(model, pixels), text_features(
            model, tokens["input_ids"], tokens["attention_mask"]
        )


def pictures(n: int = 3, px: int = 40) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (px, px + 7, 3), dtype=np.uint8)) for _ in range(n)]


def test_random_geometry_with_a_caption_tokenizer():
    model, tokenizer, image_processor = load_clip(tiny_cfg(), captions_for_tokenizer=CAPTIONS)
    text = model.config.text_config
    assert (text.bos_token_id, text.eos_token_id, text.pad_token_id) == (0, 1, 1)
    assert text.vocab_size == len(tokenizer)
    assert text.max_position_embeddings == 12
    assert model.config.vision_config.image_size == 24
    pixels = image_processor(images=pictures(1), return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 24, 24)
    ids = tokenizer("a red striped dress")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 1 and len(ids) == 6  # whole caption words are single tokens


def test_saved_folder_loads_with_transformers_and_gives_identical_embeddings(tmp_path):
    model, tokenizer, image_processor = load_clip(tiny_cfg(), captions_for_tokenizer=CAPTIONS)
    before = embed(model, tokenizer, image_processor, pictures(), CAPTIONS)
    save_clip(tmp_path / "model", model, tokenizer, image_processor)

    reloaded = CLIPModel.from_pretrained(tmp_path / "model")
    processor = AutoProcessor.from_pretrained(tmp_path / "model")
    after = embed(reloaded, processor.tokenizer, processor.image_processor, pictures(), CAPTIONS)
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    again = embed(*load_saved(tmp_path / "model"), pictures(), CAPTIONS)
    torch.testing.assert_close(again[0], before[0], rtol=0, atol=0)


def test_patch_size_must_divide_the_image_size():
    with pytest.raises(TrendgenError, match="multiple of"):
        load_clip(tiny_cfg(image_size=30), captions_for_tokenizer=CAPTIONS)


def test_random_weights_need_captions_for_the_tokenizer():
    with pytest.raises(TrendgenError, match="captions"):
        load_clip(tiny_cfg())


def test_unloadable_folders_are_one_line_errors(tmp_path):
    with pytest.raises(TrendgenError, match="not found"):
        load_saved(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrendgenError, match=r"no config\.json"):
        load_saved(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(TrendgenError, match="could not load") as err:
        load_saved(broken)
    assert "\n" not in str(err.value)


def test_pretrained_local_folder_goes_through_load_saved(tmp_path):
    model, tokenizer, image_processor = load_clip(tiny_cfg(), captions_for_tokenizer=CAPTIONS)
    save_clip(tmp_path / "m", model, tokenizer, image_processor)
    cfg = tiny_cfg()
    cfg.pretrained, cfg.name_or_path = True, str(tmp_path / "m")
    loaded, _, _ = load_clip(cfg)
    assert loaded.config.projection_dim == 16
    cfg.name_or_path = str(tmp_path / "nowhere")
    with pytest.raises(TrendgenError, match="not found"):
        load_clip(cfg)


def test_the_caption_tokenizer_is_the_same_every_time_it_is_trained():
    """Same captions, same vocabulary and merges: a from-scratch run is reproducible from its seed."""
    from trendgen.design.caption_bank import load_bank
    from trendgen.model.tokenizer import train_caption_tokenizer

    bank = [
        c
        for captions in load_bank(Path(__file__).parents[2] / "conf" / "captions" / "bank.yaml").values()
        for c in captions
    ]
    texts = [*CAPTIONS, *bank]
    first = train_caption_tokenizer(texts)
    for _ in range(4):
        again = train_caption_tokenizer(texts)
        assert again.get_vocab() == first.get_vocab()
        assert (
            again("a blush pink polka-dot wrap dress")["input_ids"]
            == first("a blush pink polka-dot wrap dress")["input_ids"]
        )
    assert first.convert_ids_to_tokens(first("zq")["input_ids"]) == [
        "<|startoftext|>",
        "z",
        "q</w>",
        "<|endoftext|>",
    ]


def quick_gelus(model: torch.nn.Module) -> tuple[int, int]:
    mods = list(model.modules())
    return sum(isinstance(m, QuickGELU) for m in mods), sum(isinstance(m, QuickGELUActivation) for m in mods)


def test_quick_gelu_is_exact_with_and_without_gradients():
    x = torch.randn(64, 300)
    stock = QuickGELUActivation()(x)
    with torch.inference_mode():
        assert torch.equal(QuickGELU()(x), stock)
    with torch.no_grad():
        assert torch.equal(QuickGELU()(x), stock)
    kept = x.clone()
    assert torch.equal(QuickGELU()(x), stock) and torch.equal(x, kept)  # a frozen block's input, unchanged
    leaf = x.clone().requires_grad_(True)
    QuickGELU()(leaf).sum().backward()
    ref = x.clone().requires_grad_(True)
    QuickGELUActivation()(ref).sum().backward()
    assert torch.equal(leaf.grad, ref.grad)


def test_loaded_models_swap_every_quick_gelu_and_embed_as_transformers_does(tmp_path):
    model, tokenizer, processor = load_clip(tiny_cfg(), captions_for_tokenizer=CAPTIONS)
    assert quick_gelus(model) == (4, 0)  # 2 vision + 2 text layers
    folder = save_clip(tmp_path / "model", model, tokenizer, processor)
    ours = load_saved(folder)[0].eval()
    assert quick_gelus(ours) == (4, 0)
    stock = CLIPModel.from_pretrained(folder).eval()  # transformers' own modules
    assert quick_gelus(stock) == (0, 4)
    pixels = processor(images=pictures(4), return_tensors="pt")["pixel_values"]
    tokens = tokenizer(CAPTIONS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        a = ours(pixel_values=pixels, **tokens)
        b = stock(pixel_values=pixels, **tokens)
    assert torch.equal(a.image_embeds, b.image_embeds) and torch.equal(a.text_embeds, b.text_embeds)
