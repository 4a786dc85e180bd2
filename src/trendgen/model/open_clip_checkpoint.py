"""open_clip checkpoints read and written without open_clip (it imports torchvision, which this torch lacks).

`model.library=open_clip` names a model as open_clip does: a built-in name with `model.pretrained_tag` (a tag
or a checkpoint file), `hf-hub:org/repo` (Marqo-FashionCLIP, Marqo-FashionSigLIP), or `local-dir:PATH` (or a
folder path). A folder is an `open_clip_config.json` (`model_cfg`, `preprocess_cfg`) beside
`open_clip_model.safetensors`. The network is converted to a `CLIPModel` or, for open_clip's SigLIP, a
`SiglipModel` (`trendgen.model.open_clip_format`), trained like any other, and saved back as such a folder
with the tokenizer's files beside it: `open_clip.create_model_and_transforms('local-dir:PATH')` loads it,
and trendgen reads the tokenizer it trained with. A checkpoint's tokenizer is its `hf_tokenizer_name`, else
CLIP's BPE (`openai/clip-vit-base-patch32`, the vocabulary of open_clip's own); random weights
(`model.pretrained=false`) learn one from the captions (a CLIP then pools its end token) and start at the
config's temperature and bias, as open_clip does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from trendgen.errors import TrendgenError, first_line
from trendgen.model.activations import use_fast_quick_gelu
from trendgen.model.open_clip_format import check_supported, from_hf_state_dict, hf_config, to_hf_state_dict
from trendgen.model.open_clip_siglip import is_siglip
from trendgen.model.tokenizer import train_caption_tokenizer

__all__ = [
    "ARCHITECTURES",
    "CONFIG_NAME",
    "OPEN_CLIP_CONFIG_KEY",
    "PRETRAINED_TAGS",
    "OpenClipCheckpoint",
    "is_open_clip_folder",
    "load_open_clip",
    "read_checkpoint",
    "save_open_clip",
]

CONFIG_NAME = "open_clip_config.json"
WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
OPEN_CLIP_CONFIG_KEY = "open_clip"  # on a converted model's config: the open_clip config it saves back with
CLIP_BPE = (
    "openai/clip-vit-base-patch32"  # open_clip's SimpleTokenizer vocabulary, as a transformers tokenizer
)
OPENAI_PREPROCESS = {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def _vit(width: int, layers: int, patch: int, embed: int, text_width: int, text_heads: int, quick: bool):
    return {
        "embed_dim": embed,
        "quick_gelu": quick,
        "vision_cfg": {"image_size": 224, "layers": layers, "width": width, "patch_size": patch},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": text_width, "heads": text_heads,
                     "layers": 12},
    }  # fmt: skip


# open_clip's built-in names this converter reads (their geometry, as open_clip's model_configs give it)
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "ViT-B-32": _vit(768, 12, 32, 512, 512, 8, quick=False),
    "ViT-B-32-quickgelu": _vit(768, 12, 32, 512, 512, 8, quick=True),
    "ViT-B-16": _vit(768, 12, 16, 512, 512, 8, quick=False),
    "ViT-B-16-quickgelu": _vit(768, 12, 16, 512, 512, 8, quick=True),
    "ViT-L-14": _vit(1024, 24, 14, 768, 768, 12, quick=False),
    "ViT-L-14-quickgelu": _vit(1024, 24, 14, 768, 768, 12, quick=True),
    "ViT-B-16-SigLIP": {
        "embed_dim": 768,
        "init_logit_bias": -10,
        "custom_text": True,
        "vision_cfg": {
            "image_size": 224,
            "timm_model_name": "vit_base_patch16_siglip_224",
            "timm_model_pretrained": False,
            "timm_pool": "map",
            "timm_proj": "none",
        },
        "text_cfg": {
            "context_length": 64,
            "vocab_size": 32000,
            "hf_tokenizer_name": "timm/ViT-B-16-SigLIP",
            "tokenizer_kwargs": {"clean": "canonicalize"},
            "width": 768,
            "heads": 12,
            "layers": 12,
            "no_causal_mask": True,
            "proj_bias": True,
            "pool_type": "last",
            "norm_kwargs": {"eps": 1e-6},
        },
    },
}
# (name, pretrained tag) -> the hub repository that holds its weights (open_clip's pretrained table)
PRETRAINED_TAGS: dict[tuple[str, str], str] = {
    ("ViT-B-32-quickgelu", "openai"): "timm/vit_base_patch32_clip_224.openai",
    ("ViT-B-32", "laion2b_s34b_b79k"): "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    ("ViT-B-32", "datacomp_xl_s13b_b90k"): "laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K",
    ("ViT-B-16-quickgelu", "openai"): "timm/vit_base_patch16_clip_224.openai",
    ("ViT-B-16", "laion2b_s34b_b88k"): "laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
    ("ViT-L-14-quickgelu", "openai"): "timm/vit_large_patch14_clip_224.openai",
    ("ViT-L-14", "laion2b_s32b_b82k"): "laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
    ("ViT-B-16-SigLIP", "webli"): "timm/ViT-B-16-SigLIP",
}
SIGLIP_PREPROCESS = {"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic", "resize_mode": "squash"}


@dataclass
class OpenClipCheckpoint:
    """What open_clip reads for a model: its config, its preprocessing and (pretrained) its weights file."""

    source: str
    model_cfg: dict[str, Any]
    preprocess_cfg: dict[str, Any] = field(default_factory=lambda: dict(OPENAI_PREPROCESS))
    weights: Path | None = None
    folder: Path | None = None  # a local folder: the tokenizer trendgen saved beside the weights


def is_open_clip_folder(path: str | Path) -> bool:
    return (Path(path).expanduser() / CONFIG_NAME).is_file()


def read_checkpoint(name: str, tag: str | None, revision: str | None, pretrained: bool) -> OpenClipCheckpoint:
    """Resolve an open_clip name as open_clip does: `hf-hub:org/repo`, `local-dir:PATH` or a folder, or a
    built-in name (with `tag`: a pretrained tag or a checkpoint file). Weights only when `pretrained`."""
    if name.startswith("local-dir:") or (not name.startswith("hf-hub:") and Path(name).expanduser().is_dir()):
        folder = Path(name.removeprefix("local-dir:")).expanduser()
        if not is_open_clip_folder(folder):
            raise TrendgenError(f"{folder} is not an open_clip folder (no {CONFIG_NAME})")
        ckpt = _from_config(name, _read_json(folder / CONFIG_NAME))
        ckpt.folder = folder
        if pretrained:
            ckpt.weights = next((folder / w for w in WEIGHT_NAMES if (folder / w).is_file()), None)
            if ckpt.weights is None:
                raise TrendgenError(f"{folder} has no {WEIGHT_NAMES[0]}")
        return ckpt
    if name.startswith("hf-hub:"):
        repo = name.removeprefix("hf-hub:")
        ckpt = _from_config(name, _read_json(Path(_hub_file(repo, [CONFIG_NAME], revision))))
        ckpt.weights = Path(_hub_file(repo, list(WEIGHT_NAMES), revision)) if pretrained else None
        return ckpt
    if name not in ARCHITECTURES:
        raise TrendgenError(
            f"model.name_or_path={name!r} is not an open_clip model trendgen reads: one of "
            f"{', '.join(ARCHITECTURES)}, hf-hub:ORG/REPO, local-dir:PATH or an open_clip folder"
        )
    ckpt = OpenClipCheckpoint(name, json.loads(json.dumps(ARCHITECTURES[name])))
    if is_siglip(ckpt.model_cfg):
        ckpt.preprocess_cfg = dict(SIGLIP_PREPROCESS)
    if pretrained:
        if tag and Path(tag).expanduser().is_file():
            ckpt.weights = Path(tag).expanduser()
        elif (name, str(tag)) in PRETRAINED_TAGS:
            ckpt.weights = Path(_hub_file(PRETRAINED_TAGS[(name, str(tag))], list(WEIGHT_NAMES), revision))
        else:
            tags = ", ".join(t for n, t in PRETRAINED_TAGS if n == name) or "none"
            raise TrendgenError(
                f"model.pretrained_tag={tag!r} for {name}: one of {tags}, or a checkpoint file"
            )
    return ckpt


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise TrendgenError(f"unreadable {path}: {first_line(err)}") from None


def _from_config(source: str, config: dict[str, Any]) -> OpenClipCheckpoint:
    if not isinstance(config.get("model_cfg"), dict):
        raise TrendgenError(f"open_clip model {source}: {CONFIG_NAME} has no model_cfg")
    check_supported(config["model_cfg"], source)
    preprocess = dict(OPENAI_PREPROCESS) | dict(config.get("preprocess_cfg") or {})
    return OpenClipCheckpoint(source, config["model_cfg"], preprocess)


def _hub_file(repo: str, names: list[str], revision: str | None) -> str:
    from huggingface_hub import hf_hub_download

    errors = []
    for filename in names:
        try:
            return hf_hub_download(repo, filename, revision=revision)
        except Exception as err:  # the next name, then one line naming the repository
            errors.append(first_line(err))
    raise TrendgenError(f"could not load open_clip model hf-hub:{repo}: {errors[-1]}")


def _weights(path: Path) -> dict[str, Tensor]:
    """A checkpoint's tensors (safetensors, or a torch file of a state dict); unreadable: one line."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a torn download or another file under the name
        raise TrendgenError(f"unreadable open_clip weights {path}: {first_line(err)}") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise TrendgenError(f"open_clip weights {path} hold no state dict")
    return state


def load_open_clip(source: Any, captions_for_tokenizer: Any = None) -> tuple[Any, Any, Any]:
    """(CLIPModel or SiglipModel, tokenizer, image processor) of an open_clip checkpoint. `source` is a model
    config (`name_or_path`, `pretrained_tag`, `revision`, `pretrained`), or a folder."""
    from transformers import AutoModel

    if isinstance(source, Path):
        name, tag, revision, pretrained = f"local-dir:{source}", None, None, True
    else:
        name, tag, revision = str(source.name_or_path), source.get("pretrained_tag"), source.get("revision")
        pretrained = bool(source.pretrained)
    ckpt = read_checkpoint(name, tag, revision, pretrained)
    text = ckpt.model_cfg.setdefault("text_cfg", {})
    if pretrained:
        tokenizer = _tokenizer(ckpt, revision)
    elif captions_for_tokenizer is None:
        raise TrendgenError("model.pretrained=false needs the dataset captions to learn a tokenizer")
    else:  # the caption tokenizer's ids; a CLIP text tower pools its end token (open_clip's `eos` pooling)
        tokenizer = train_caption_tokenizer(
            captions_for_tokenizer, model_max_length=text.get("context_length", 77)
        )
        text.update(vocab_size=len(tokenizer), pad_id=tokenizer.pad_token_id)
        if not is_siglip(ckpt.model_cfg):  # SigLIP pools the last position
            text.update(pool_type="eos", eos_id=tokenizer.eos_token_id)
    state = _weights(ckpt.weights) if ckpt.weights is not None else None
    config = hf_config(ckpt.model_cfg, state)
    model = AutoModel.from_config(config)
    if state is not None:
        converted = to_hf_state_dict(state, ckpt.model_cfg, ckpt.source, config)
        missing, unexpected = model.load_state_dict(converted, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise TrendgenError(
                f"open_clip model {ckpt.source}: weights do not fit ({(missing + unexpected)[0]})"
            )
    else:  # open_clip's starting temperature and bias
        with torch.no_grad():
            model.logit_scale.fill_(float(ckpt.model_cfg.get("init_logit_scale", math.log(1 / 0.07))))
            if getattr(model, "logit_bias", None) is not None:
                model.logit_bias.fill_(float(ckpt.model_cfg["init_logit_bias"]))
    use_fast_quick_gelu(model)
    setattr(
        model.config,
        OPEN_CLIP_CONFIG_KEY,
        {"model_cfg": ckpt.model_cfg, "preprocess_cfg": ckpt.preprocess_cfg},
    )
    image_size = int(config.vision_config.image_size)
    return model, tokenizer, image_processor(ckpt.preprocess_cfg, image_size, ckpt.source)


def _tokenizer(ckpt: OpenClipCheckpoint, revision: str | None) -> Any:
    from transformers import AutoTokenizer, CLIPTokenizer

    text = ckpt.model_cfg.get("text_cfg", {})
    length = int(text.get("context_length", 77))
    try:
        if ckpt.folder is not None and (ckpt.folder / "tokenizer_config.json").is_file():
            return AutoTokenizer.from_pretrained(ckpt.folder)
        if text.get("hf_tokenizer_name"):
            return AutoTokenizer.from_pretrained(text["hf_tokenizer_name"], model_max_length=length)
        return CLIPTokenizer.from_pretrained(CLIP_BPE, model_max_length=length)
    except (OSError, ValueError) as err:
        raise TrendgenError(
            f"open_clip model {ckpt.source}: could not load its tokenizer: {first_line(err)}"
        ) from err


def image_processor(preprocess_cfg: dict[str, Any], image_size: int, source: str) -> Any:
    """open_clip's preprocessing as a transformers image processor: resize the short side and centre crop
    (`shortest`) or resize to the square (`squash`), with its interpolation, mean and std."""
    from transformers.models.clip import CLIPImageProcessorPil
    from transformers.models.siglip import SiglipImageProcessorPil

    resample = {"bicubic": 3, "bilinear": 2}.get(str(preprocess_cfg.get("interpolation")))
    mode = preprocess_cfg.get("resize_mode", "shortest")
    if resample is None or mode not in ("shortest", "squash"):
        raise TrendgenError(
            f"open_clip model {source}: preprocess_cfg interpolation="
            f"{preprocess_cfg.get('interpolation')!r}, resize_mode={mode!r} (trendgen reads bicubic or "
            "bilinear, shortest or squash)"
        )
    square = {"height": image_size, "width": image_size}
    mean, std = list(preprocess_cfg["mean"]), list(preprocess_cfg["std"])
    if mode == "squash":
        return SiglipImageProcessorPil(size=square, resample=resample, image_mean=mean, image_std=std)
    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size=square,
        resample=resample,
        image_mean=mean,
        image_std=std,
    )


def save_open_clip(folder: Path, model: Any, tokenizer: Any) -> None:
    """Write a converted model into `folder`: open_clip's config and safetensors, and its tokenizer."""
    from safetensors.torch import save_file

    saved = json.loads(json.dumps(getattr(model.config, OPEN_CLIP_CONFIG_KEY)))
    saved["model_cfg"].setdefault("text_cfg", {})["vocab_size"] = int(model.config.text_config.vocab_size)
    (folder / CONFIG_NAME).write_text(json.dumps(saved, indent=2) + "\n")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_file(from_hf_state_dict(state, saved["model_cfg"], model.config), str(folder / WEIGHT_NAMES[0]))
    tokenizer.save_pretrained(folder)
