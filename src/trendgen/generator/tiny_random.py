"""A tiny Stable Diffusion pipeline with random weights, built locally (offline runs and tests).

The UNet, VAE and CLIP text encoder are a few hundred thousand parameters each, seeded, so the same build
always gives the same weights; the tokenizer is learnt from the caption bank with `train_caption_tokenizer`.
The pipeline is saved once with `save_pretrained` under the cache dir and always loaded back with
`StableDiffusionPipeline.from_pretrained`, so offline runs go through the same loading path as a real model.
Its pictures are noise: it exists to exercise the real pipeline code end to end.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import torch

from trendgen.identity import stable_hash
from trendgen.model.tokenizer import train_caption_tokenizer

BUILD_VERSION = 1
_SEED = 0
_GENERIC_WORDS = [
    "fashion design, studio photograph, full body, plain background, high detail",
    "a garment, an outfit, a look, a piece of clothing",
]


def tiny_pipeline_folder(cache_dir: str | Path, texts: Iterable[str]) -> Path:
    """The saved tiny pipeline for these tokenizer texts: built and saved on first use, then reused."""
    texts = [*_GENERIC_WORDS, *texts]
    key = stable_hash("tiny-sd", BUILD_VERSION, texts)
    folder = Path(str(cache_dir)).expanduser() / "generators" / f"tiny-sd-{key}"
    if (folder / "model_index.json").is_file():
        return folder
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    build_tiny_pipeline(texts).save_pretrained(partial)
    if folder.exists():  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
    else:
        os.replace(partial, folder)
    return folder


def build_tiny_pipeline(texts: list[str]):  # -> StableDiffusionPipeline
    """A StableDiffusionPipeline with tiny, seeded random components and a DPM-Solver scheduler."""
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = train_caption_tokenizer(texts, vocab_size=1024, model_max_length=77)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        unet = UNet2DConditionModel(
            sample_size=32,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(32, 64),
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=32,
            sample_size=64,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=77,
                projection_dim=32,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            )
        )
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
