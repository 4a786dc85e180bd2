"""Helpers for the generator tests: a tiny CLIP folder, tiny UNet and data overrides, the console script."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from helpers.apps import run_app
from helpers.design import make_tiny_clip

BIN = Path(sys.executable).parent

# Synthetic garments at 16 px, a UNet of two 32-channel levels: a step takes a few hundredths of a second.
SMALL_DATA = [
    "data=synthetic",
    "data.size=48",
    "data.val_size=16",
    "data.test_size=16",
    "data.batch_size=8",
    "data.num_workers=0",
    "data.image_px=32",
]
TINY_UNET = [
    "diffusion.resolution=16",
    "diffusion.unet.block_out_channels=[32,32]",
    "diffusion.unet.down_block_types=[DownBlock2D,CrossAttnDownBlock2D]",
    "diffusion.unet.up_block_types=[CrossAttnUpBlock2D,UpBlock2D]",
    "diffusion.unet.norm_num_groups=8",
    "diffusion.warmup_steps=1",
]
FAST_SAMPLING = [
    "sampling.steps=2",
    "sampling.samples_per_prompt=1",
    "sampling.novelty_train_images=16",
    "sampling.novelty_heldout_images=8",
]


def clip_folder(root: Path) -> Path:
    """A random tiny CLIP saved as trendgen-train saves one (text width 32, pooled width 16)."""
    folder = root / "clip"
    if not (folder / "config.json").exists():
        make_tiny_clip(folder)
    return folder


def generator_overrides(clip: Path, run_dir: Path) -> list[str]:
    return [
        *SMALL_DATA,
        *TINY_UNET,
        *FAST_SAMPLING,
        f"diffusion.text_encoder={clip}",
        f"hydra.run.dir={run_dir}",
        "trainer.enable_progress_bar=false",
        "~callbacks.progress_bar",
    ]


def run_tool(tool: str, args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    full_env.update(TRENDGEN_ROOT=str(cwd), WANDB_SILENT="true", OMP_NUM_THREADS="1", OPENAI_API_KEY="")
    full_env.update(env or {})
    return run_app([BIN / tool, *args], cwd=cwd, env=full_env, timeout=timeout)
