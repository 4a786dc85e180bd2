"""The generator folder (`OUTPUT/generator/`): written by `trendgen-train-generator`, drawn with by
`trendgen-design generator=trained`.

- pixel: a full `save_pretrained` `TrendgenPipeline` (UNet, DPM-Solver scheduler, text tower, tokenizer).
- lora: the LoRA in diffusers' format (`pytorch_lora_weights.safetensors`), so
  `pipe.load_lora_weights(folder)` loads it into any diffusers Stable Diffusion pipeline of its base.
Both carry `generator.json`: the kind, the base (lora), the step, whether the weights are EMA, and the words
of the training captions with the captions themselves (pixel), so a prompt reaches the generator in words,
and where it can in a phrasing, it was trained on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from trendgen import __version__
from trendgen.errors import TrendgenError, first_line
from trendgen.generator.parts import GeneratorParts
from trendgen.generator.pipeline import dtype_keyword

RECORD = "generator.json"
FORMAT = "trendgen-generator"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
CAPTION_RECORD_LIMIT = 20_000  # distinct training captions kept in generator.json; more are left out
_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def assemble_pipeline(parts: GeneratorParts) -> Any:
    """A diffusers pipeline over the parts in memory (validation sampling; the pixel export)."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    scheduler = DPMSolverMultistepScheduler.from_config(parts.noise_scheduler.config)
    if parts.kind == "pixel":
        from trendgen.generator.pipeline import TrendgenPipeline

        pipe = TrendgenPipeline(parts.unet, scheduler, parts.text_encoder, parts.tokenizer)
    else:
        pipe = StableDiffusionPipeline(
            vae=parts.vae,
            text_encoder=parts.text_encoder,
            tokenizer=parts.tokenizer,
            unet=parts.unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.vae.enable_slicing()  # validation decodes a whole sampling batch
    pipe.set_progress_bar_config(disable=True)
    return pipe


def export_generator(
    folder: Path, parts: GeneratorParts, info: dict[str, Any], captions: list[str], replace: bool = False
) -> Path:
    """Write the generator folder atomically (a partial folder renamed into place). An existing one is never
    overwritten, except with `replace` (a run resuming itself), and then only once the new one is complete.

    `captions`: the training captions; a pixel generator records their words and (up to
    CAPTION_RECORD_LIMIT distinct ones) the captions themselves."""
    if folder.exists() and any(folder.iterdir()) and not replace:
        raise TrendgenError(f"{folder} already holds a generator; it is never overwritten") from None
    partial = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    if parts.kind == "pixel":
        assemble_pipeline(parts).save_pretrained(partial)
    else:
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(parts.unet))
        StableDiffusionPipeline.save_lora_weights(
            partial,
            unet_lora_layers=layers,
            unet_lora_adapter_metadata=parts.unet.peft_config["default"].to_dict(),  # rank, alpha, targets
            safe_serialization=True,
        )
    record = {
        "format": FORMAT,
        "trendgen_version": __version__,
        "kind": parts.kind,
        "base": parts.base,
        "revision": parts.revision,
        "base_unet": _unet_signature(parts.unet.config) if parts.kind == "lora" else None,
        "vocabulary": sorted({w for c in captions for w in words(c)}) if parts.kind == "pixel" else None,
        "captions": recorded_captions(captions) if parts.kind == "pixel" else None,
        **info,
    }
    (partial / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    if folder.exists():
        earlier = folder.with_name(f".{folder.name}.earlier-{os.getpid()}")
        os.replace(folder, earlier)
        os.replace(partial, folder)
        shutil.rmtree(earlier)
    else:
        os.replace(partial, folder)
    return folder


def recorded_captions(captions: list[str]) -> list[str] | None:
    """The distinct training captions, normalised to their words, sorted; None past CAPTION_RECORD_LIMIT."""
    distinct = sorted({" ".join(words(c)) for c in captions} - {""})
    return distinct if len(distinct) <= CAPTION_RECORD_LIMIT else None


def _unet_signature(config: Any) -> dict[str, Any]:
    """The base UNet's shape: a LoRA only fits a base of the same shape."""
    return {
        k: _plain(config[k])
        for k in ("sample_size", "cross_attention_dim", "block_out_channels", "in_channels")
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def read_record(folder: str | Path) -> dict[str, Any]:
    """The folder's generator.json; a folder that is not a trendgen generator is refused in one line."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise TrendgenError(f"generator.name_or_path: no such generator folder: {path}") from None
    try:
        record = json.loads((path / RECORD).read_text())
    except FileNotFoundError:
        raise TrendgenError(
            f"generator.name_or_path: {path} is not a trendgen generator (no {RECORD}); point it at the "
            "generator/ folder of a trendgen-train-generator run"
        ) from None
    except (OSError, ValueError) as err:
        raise TrendgenError(
            f"generator.name_or_path: unreadable {path / RECORD}: {first_line(err)}"
        ) from None
    if (
        not isinstance(record, dict)
        or record.get("format") != FORMAT
        or record.get("kind") not in ("pixel", "lora")
    ):
        raise TrendgenError(
            f"generator.name_or_path: {path / RECORD} is not a trendgen generator record"
        ) from None
    return record


def load_generator(
    folder: str | Path, device: torch.device, dtype: torch.dtype, base: str | None = None
) -> Any:
    """The pipeline a generator folder describes, on `device`; `base` overrides a LoRA's recorded base."""
    from diffusers import StableDiffusionPipeline

    path = Path(folder).expanduser()
    record = read_record(path)
    kw = {dtype_keyword(): dtype}
    if record["kind"] == "pixel":
        from trendgen.generator.pipeline import TrendgenPipeline

        try:
            return TrendgenPipeline.from_pretrained(path, **kw).to(device)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise TrendgenError(
                f"generator.name_or_path: cannot load the generator in {path}: {first_line(err)}"
            ) from None
    base = base or record["base"]
    try:
        pipe = StableDiffusionPipeline.from_pretrained(base, revision=record.get("revision"), **kw)
    except (OSError, ValueError) as err:
        raise TrendgenError(
            f"generator: cannot load the LoRA's base Stable Diffusion {base!r}: {first_line(err)}"
        ) from None
    wanted = record.get("base_unet") or {}
    found = _unet_signature(pipe.unet.config)
    if wanted and wanted != found:
        raise TrendgenError(
            f"generator.name_or_path: the LoRA in {path} was trained on another base model "
            f"({record['base']}, UNet {wanted}); {base} has UNet {found}"
        ) from None
    try:
        pipe.load_lora_weights(str(path), weight_name=LORA_WEIGHTS)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise TrendgenError(
            f"generator.name_or_path: the LoRA in {path} does not fit {base}: {first_line(err)}"
        ) from None
    return pipe.to(device)


def restrict_to_vocabulary(prompt: str, vocabulary: list[str] | None) -> str:
    """The prompt in words the generator was trained on: the phrases (comma-separated) made only of known
    words; when none is, the known words in order; the prompt unchanged when none is known or there is no
    vocabulary (a generator with an open vocabulary, such as Stable Diffusion's)."""
    if not vocabulary:
        return prompt
    known = set(vocabulary)
    phrases = [p.strip() for p in prompt.split(",") if p.strip()]
    whole = [p for p in phrases if words(p) and all(w in known for w in words(p))]
    if whole:
        return ", ".join(whole)
    kept = [w for w in words(prompt) if w in known]
    return " ".join(kept) if kept else prompt


def training_phrasing(text: str, captions: list[str] | None) -> str:
    """`text` as the generator's training captions phrase it: the shortest training caption (the first in
    sorted order on ties) that holds every word of `text`; `text` itself when it is one, or when no caption
    holds all its words (a new combination is left for the generator to compose).

    "a dress" becomes "a photo of a dress" for a generator trained on "a photo of a {category}"."""
    wanted = set(words(text))
    if not captions or not wanted or " ".join(words(text)) in captions:
        return text
    holding = [c for c in captions if wanted <= set(c.split())]
    return min(holding, key=lambda c: (len(c.split()), c)) if holding else text


def generator_text(prompt: str, vocabulary: list[str] | None, captions: list[str] | None) -> str:
    """What a generator is given for `prompt`: its known words, in a training caption's phrasing where one
    holds them all; the prompt unchanged for an open vocabulary."""
    return training_phrasing(restrict_to_vocabulary(prompt, vocabulary), captions)
