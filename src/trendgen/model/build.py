"""Build CLIP: pretrained (hub id or folder), random weights from a geometry, or a saved trendgen folder."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from transformers import AutoProcessor, CLIPConfig, CLIPModel, CLIPProcessor
from transformers.models.clip import CLIPImageProcessorPil

from trendgen.errors import TrendgenError, first_line
from trendgen.files import replace_dir, temp_sibling
from trendgen.hub import is_local
from trendgen.model.activations import use_fast_quick_gelu
from trendgen.model.tokenizer import train_caption_tokenizer

log = logging.getLogger(__name__)

ClipParts = tuple[CLIPModel, Any, Any]  # (model, tokenizer, image processor)


def image_processor_for(image_size: int) -> CLIPImageProcessorPil:
    """CLIP preprocessing (resize the short side, centre crop, CLIP mean/std) at `image_size` pixels."""
    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )


def random_clip(geometry: Any, vocab_size: int) -> CLIPModel:
    """A CLIPModel with random weights in the given geometry (a `ClipGeometry` config)."""
    text = {
        "vocab_size": vocab_size,
        "hidden_size": geometry.text_hidden_size,
        "intermediate_size": geometry.text_intermediate_size,
        "num_hidden_layers": geometry.text_layers,
        "num_attention_heads": geometry.text_heads,
        "max_position_embeddings": geometry.max_text_length,
        "projection_dim": geometry.projection_dim,
        # The caption tokenizer's ids; eos must not be 2 (transformers' legacy argmax pooling).
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
    }
    vision = {
        "image_size": geometry.image_size,
        "patch_size": geometry.patch_size,
        "hidden_size": geometry.vision_hidden_size,
        "intermediate_size": geometry.vision_intermediate_size,
        "num_hidden_layers": geometry.vision_layers,
        "num_attention_heads": geometry.vision_heads,
        "projection_dim": geometry.projection_dim,
    }
    if geometry.image_size % geometry.patch_size:
        raise TrendgenError(
            f"model.geometry.image_size={geometry.image_size} is not a multiple of "
            f"model.geometry.patch_size={geometry.patch_size}"
        )
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=geometry.projection_dim)
    model = CLIPModel(config)
    use_fast_quick_gelu(model)
    return model


def load_clip(model_cfg: Any, captions_for_tokenizer: Iterable[str] | None = None) -> ClipParts:
    """CLIP, its tokenizer and image processor as `model_cfg` asks.

    `model.pretrained=true` loads `model.name_or_path` (hub id or folder). Otherwise the `model.geometry` is
    built with random weights and a BPE tokenizer is learnt from `captions_for_tokenizer` (the dataset's
    captions and category prompts), so nothing needs the network.
    """
    if model_cfg.pretrained:
        return _from_pretrained(str(model_cfg.name_or_path), model_cfg.get("revision"))
    if captions_for_tokenizer is None:
        raise TrendgenError("model.pretrained=false needs the dataset captions to learn a tokenizer")
    geometry = model_cfg.geometry
    tokenizer = train_caption_tokenizer(captions_for_tokenizer, model_max_length=geometry.max_text_length)
    model = random_clip(geometry, vocab_size=len(tokenizer))
    return model, tokenizer, image_processor_for(geometry.image_size)


def load_pretrained(name_or_path: str, revision: str | None = None) -> ClipParts:
    """CLIP, tokenizer and image processor from a saved folder or a hub id."""
    return _from_pretrained(name_or_path, revision)


def _from_pretrained(name_or_path: str, revision: str | None = None) -> ClipParts:
    if is_local(name_or_path):
        return load_saved(name_or_path)
    try:
        model = CLIPModel.from_pretrained(name_or_path, revision=revision)
        processor = AutoProcessor.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as err:
        raise TrendgenError(f"could not load CLIP {name_or_path!r}: {first_line(err)}") from err
    use_fast_quick_gelu(model)
    return model, processor.tokenizer, processor.image_processor


def load_saved(folder: str | Path) -> ClipParts:
    """Load a saved model folder (CLIPModel + tokenizer + image processor, e.g. OUTPUT/model/)."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise TrendgenError(f"model folder not found: {path}")
    if not (path / "config.json").is_file():
        raise TrendgenError(f"{path} is not a saved model folder (no config.json)")
    try:
        model = CLIPModel.from_pretrained(path)
        processor = AutoProcessor.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise TrendgenError(f"could not load a CLIP model from {path}: {first_line(err)}") from err
    use_fast_quick_gelu(model)
    tokenizer = getattr(processor, "tokenizer", None)
    image_processor = getattr(processor, "image_processor", None)
    if tokenizer is None or image_processor is None:
        raise TrendgenError(f"{path} lacks a tokenizer or an image processor")
    return model, tokenizer, image_processor


def save_clip(folder: str | Path, model: CLIPModel, tokenizer: Any, image_processor: Any) -> Path:
    """Write a folder that `CLIPModel.from_pretrained` and `AutoProcessor.from_pretrained` load: whole, into
    a temporary folder first, then swapped in (a run killed while saving leaves the earlier folder whole)."""
    path = Path(folder)
    partial = temp_sibling(path, "partial")
    try:
        model.save_pretrained(partial)
        CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(partial)
        replace_dir(partial, path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return path
