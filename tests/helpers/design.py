"""Helpers for the design tests: tiny saved CLIP and SigLIP folders, trending image folders, composed
configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from transformers import CLIPConfig, CLIPModel, CLIPProcessor
from transformers.models.clip import CLIPImageProcessorPil

from helpers.apps import run_app
from trendgen.config import CONF_DIR, register_configs
from trendgen.data.synthetic import COLORS, GARMENTS, PATTERNS
from trendgen.design.caption_bank import load_bank
from trendgen.model.tokenizer import train_caption_tokenizer

REPO = Path(__file__).resolve().parents[2]  # the checkout
BANK = Path(CONF_DIR) / "captions" / "bank.yaml"  # the bank the package ships
DESIGN_BIN = Path(sys.executable).parent / "trendgen-design"


def make_tiny_clip(folder: Path, seed: int = 0, vision_act: str = "quick_gelu") -> Path:
    """A random tiny CLIP saved like the trainer saves it: CLIPModel + tokenizer + image processor.

    `vision_act`: the image tower's activation (`xielu` gives a model the ONNX exporter cannot export)."""
    texts = [f"a {c} {p} {g}" for g in GARMENTS for c in COLORS for p in PATTERNS]
    texts += [c for captions in load_bank(BANK).values() for c in captions]  # every bank word is known
    tokenizer = train_caption_tokenizer(texts, vocab_size=4096, model_max_length=32)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "hidden_act": vision_act,
        },
        projection_dim=16,
    )
    processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def make_tiny_siglip(folder: Path, seed: int = 0) -> Path:
    """A random tiny SigLIP saved as trendgen-train saves one (widths 32, the same vocabulary as
    `make_tiny_clip`)."""
    from trendgen.config import ClipGeometry
    from trendgen.model.build import save_clip
    from trendgen.model.families import random_siglip, siglip_image_processor

    texts = [f"a {c} {p} {g}" for g in GARMENTS for c in COLORS for p in PATTERNS]
    texts += [c for captions in load_bank(BANK).values() for c in captions]
    tokenizer = train_caption_tokenizer(texts, vocab_size=4096, model_max_length=32)
    torch.manual_seed(seed)
    geometry = ClipGeometry(
        image_size=32, patch_size=8, vision_hidden_size=32, vision_layers=1, vision_heads=2,
        vision_intermediate_size=64, text_hidden_size=32, text_layers=1, text_heads=2,
        text_intermediate_size=64, projection_dim=32, max_text_length=32,
    )  # fmt: skip
    save_clip(folder, random_siglip(geometry, len(tokenizer)), tokenizer, siglip_image_processor(32))
    return folder


def write_looks(folder: Path, n: int = 24, seed: int = 0, share: float = 0.5) -> Path:
    """A synthetic trending folder (half of it red striped dresses) from the data helper's writer."""
    from trendgen.data.synthetic import write_trend_folder

    planted = {"garment": "dress", "color": "red", "pattern": "striped"}
    write_trend_folder(folder, n=n, planted=planted, planted_share=share, seed=seed, px=32)
    return folder


def base_overrides(tmp: Path, model_dir: Path, images: Path, out: str = "out") -> list[str]:
    """Overrides for a fast CPU run with everything under `tmp`."""
    return [
        f"paths.output_dir={tmp / out}",
        f"paths.cache_dir={tmp / 'cache'}",
        f"paths.log_dir={tmp / 'runs'}",
        f"model.name_or_path={model_dir}",
        f"trend.images={images}",
        "trend.clusters=2",
        "trend.n_init=2",
        "trend.num_workers=0",
        "trend.batch_size=8",
        "trend.exemplars=3",
        "generator.num_images=2",
        "generator.steps=2",
        "generator.height=64",
        "generator.width=64",
    ]


def compose_design(overrides: list[str]) -> DictConfig:
    """The design config as `trendgen-design` composes it (outside a Hydra run: output_dir is overridden)."""
    register_configs()
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("design", overrides=overrides)


def run_cli(
    args: list[str], tmp: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`trendgen-design ARGS` in a subprocess (run dir under `tmp`); OPENAI_API_KEY from `env` only."""
    base = {"OPENAI_API_KEY": "", "TRENDGEN_ROOT": str(REPO), "OMP_NUM_THREADS": "1"}
    env = {**os.environ, **base, **(env or {})}
    cmd = [str(DESIGN_BIN), f"hydra.run.dir={tmp / 'hydra_run'}", *args]
    return run_app(cmd, timeout=timeout, env=env, cwd=tmp)
