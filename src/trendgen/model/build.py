"""Build a contrastive model (CLIP or SigLIP): pretrained (hub id or folder), random weights from a geometry,
or a saved trendgen folder. The family (`trendgen.model.families`) comes from a checkpoint's own config, or
from `model.family` for random weights. `model.library=open_clip` reads open_clip checkpoints into a
`CLIPModel` or `SiglipModel` (`trendgen.model.open_clip_checkpoint`), and such a model saves as an open_clip
folder."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoProcessor, PreTrainedModel

from trendgen.errors import TrendgenError, first_line
from trendgen.files import replace_dir, temp_sibling
from trendgen.hub import is_local
from trendgen.model.activations import use_fast_quick_gelu
from trendgen.model.families import clip_image_processor, family_named, family_of, random_clip
from trendgen.model.open_clip_checkpoint import (
    OPEN_CLIP_CONFIG_KEY,
    is_open_clip_folder,
    load_open_clip,
    save_open_clip,
)
from trendgen.model.tokenizer import train_caption_tokenizer

log = logging.getLogger(__name__)

ClipParts = tuple[PreTrainedModel, Any, Any]  # (model, tokenizer, image processor)
image_processor_for = clip_image_processor  # CLIP preprocessing at a size (the tiny generator's judge too)
__all__ = ["ClipParts", "load_clip", "load_pretrained", "load_saved", "random_clip", "save_clip"]


def load_clip(model_cfg: Any, captions_for_tokenizer: Iterable[str] | None = None) -> ClipParts:
    """The model, its tokenizer and image processor as `model_cfg` asks.

    `model.pretrained=true` loads `model.name_or_path` (hub id or folder). Otherwise the `model.geometry` is
    built with random weights and a BPE tokenizer is learnt from `captions_for_tokenizer` (the dataset's
    captions and category prompts), so nothing needs the network.
    """
    library = str(model_cfg.get("library", "transformers"))
    if library not in ("transformers", "open_clip"):
        raise TrendgenError(f"model.library must be transformers or open_clip, not {library!r}")
    if library == "open_clip":
        return load_open_clip(model_cfg, captions_for_tokenizer)
    if model_cfg.pretrained:
        return _from_pretrained(str(model_cfg.name_or_path), model_cfg.get("revision"))
    if captions_for_tokenizer is None:
        raise TrendgenError("model.pretrained=false needs the dataset captions to learn a tokenizer")
    geometry, family = model_cfg.geometry, family_named(str(model_cfg.get("family", "clip")))
    tokenizer = train_caption_tokenizer(captions_for_tokenizer, model_max_length=geometry.max_text_length)
    model = family.build_random(geometry, len(tokenizer))
    return model, tokenizer, family.image_processor(geometry.image_size)


def load_pretrained(name_or_path: str, revision: str | None = None) -> ClipParts:
    """Model, tokenizer and image processor from a saved folder or a hub id (CLIP or SigLIP)."""
    return _from_pretrained(name_or_path, revision)


def _from_pretrained(name_or_path: str, revision: str | None = None) -> ClipParts:
    if is_local(name_or_path):
        return load_saved(name_or_path)
    try:
        family = family_of(AutoConfig.from_pretrained(name_or_path, revision=revision))
        model = family.model_class.from_pretrained(name_or_path, revision=revision)
        processor = AutoProcessor.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as err:
        raise TrendgenError(f"could not load model {name_or_path!r}: {first_line(err)}") from err
    use_fast_quick_gelu(model)
    return model, processor.tokenizer, processor.image_processor


def load_saved(folder: str | Path) -> ClipParts:
    """Load a saved model folder (CLIP or SigLIP, tokenizer, image processor: OUTPUT/model/)."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise TrendgenError(f"model folder not found: {path}")
    if not (path / "config.json").is_file() and is_open_clip_folder(path):
        return load_open_clip(path)
    if not (path / "config.json").is_file():
        raise TrendgenError(f"{path} is not a saved model folder (no config.json)")
    try:
        family = family_of(AutoConfig.from_pretrained(path))
        model = family.model_class.from_pretrained(path)
        processor = AutoProcessor.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise TrendgenError(f"could not load a model from {path}: {first_line(err)}") from err
    use_fast_quick_gelu(model)
    tokenizer = getattr(processor, "tokenizer", None)
    image_processor = getattr(processor, "image_processor", None)
    if tokenizer is None or image_processor is None:
        raise TrendgenError(f"{path} lacks a tokenizer or an image processor")
    return model, tokenizer, image_processor


def save_clip(folder: str | Path, model: PreTrainedModel, tokenizer: Any, image_processor: Any) -> Path:
    """Write a folder that the family's model class (`AutoModel`) and `AutoProcessor` load (a model read from
    open_clip: one `open_clip.create_model_and_transforms('local-dir:...')` loads, with the tokenizer's files
    beside): whole, into a temporary folder first, then swapped in (a run killed while saving leaves the
    earlier folder whole)."""
    path = Path(folder)
    partial = temp_sibling(path, "partial")
    try:
        if getattr(model.config, OPEN_CLIP_CONFIG_KEY, None):
            partial.mkdir(parents=True)
            save_open_clip(partial, model, tokenizer)
            replace_dir(partial, path)
            return path
        model.save_pretrained(partial)
        processor = family_of(model).processor_class(image_processor=image_processor, tokenizer=tokenizer)
        processor.save_pretrained(partial)
        replace_dir(partial, path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return path
