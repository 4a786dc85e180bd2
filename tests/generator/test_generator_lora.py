"""A LoRA on a (tiny, local) Stable Diffusion: only adapter weights train, its export is a diffusers LoRA
file that `load_lora_weights` puts into a fresh pipeline with the same images, and a wrong base is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from helpers.generator import SMALL_DATA, clip_folder, run_tool
from hydra import compose, initialize_config_dir

from trendgen.config import CONF_DIR, register_configs
from trendgen.errors import TrendgenError
from trendgen.generator.export import (
    LORA_WEIGHTS,
    assemble_pipeline,
    export_generator,
    load_generator,
    read_record,
)
from trendgen.generator.parts import build_parts
from trendgen.generator.tiny_random import tiny_pipeline_folder

PROMPT = "a red striped dress"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tiny_pipeline_folder(tmp_path_factory.mktemp("sd"), [PROMPT, "a blue plain coat"])


def lora_cfg(base: Path, *extra: str):
    register_configs()
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        overrides = ["diffusion=small_sd_lora", f"diffusion.name_or_path={base}", *extra]
        cfg = compose("train_generator", overrides=overrides)
    return cfg.diffusion


def draw(pipe, seed: int = 0):
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        PROMPT,
        num_inference_steps=2,
        guidance_scale=2.0,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    return torch.from_numpy(out.images)


def test_only_the_adapter_trains_and_load_lora_weights_reproduces_it(base, tmp_path):
    torch.manual_seed(0)
    parts = build_parts(lora_cfg(base, "diffusion.lora.rank=4", "diffusion.lora.alpha=16"))  # scale 4
    trainable = [n for n, p in parts.unet.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any(p.requires_grad for p in parts.text_encoder.parameters())
    assert not any(p.requires_grad for p in parts.vae.parameters())
    with torch.no_grad():  # what training does to an adapter: lora_B leaves zero
        for p in parts.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.5)
    adapted = draw(assemble_pipeline(parts))
    folder = export_generator(tmp_path / "generator", parts, {"global_step": 1}, captions=[])
    assert (folder / LORA_WEIGHTS).is_file() and read_record(folder)["kind"] == "lora"

    fresh = StableDiffusionPipeline.from_pretrained(base, safety_checker=None, requires_safety_checker=False)
    plain = draw(fresh)
    fresh.load_lora_weights(str(folder))
    assert torch.allclose(draw(fresh), adapted, atol=1e-5)
    assert not torch.allclose(plain, adapted, atol=1e-3)  # the LoRA changes the images
    assert torch.allclose(
        draw(load_generator(folder, torch.device("cpu"), torch.float32)), adapted, atol=1e-5
    )


def test_a_lora_for_another_base_is_refused(base, tmp_path):
    parts = build_parts(lora_cfg(base))
    folder = export_generator(tmp_path / "generator", parts, {"global_step": 1}, captions=[])
    other = tmp_path / "other-base"
    shutil.copytree(base, other)
    config = dict(UNet2DConditionModel.load_config(other / "unet"))
    config["block_out_channels"] = [32, 32]
    shutil.rmtree(other / "unet")
    UNet2DConditionModel.from_config(config).save_pretrained(other / "unet")
    with pytest.raises(TrendgenError, match="trained on another base model"):
        load_generator(folder, torch.device("cpu"), torch.float32, base=str(other))


def test_lora_training_run_writes_a_loadable_lora(base, tmp_path):
    run_dir = tmp_path / "run"
    args = [
        *SMALL_DATA,
        "diffusion=small_sd_lora",
        f"diffusion.name_or_path={base}",
        "diffusion.resolution=64",
        "diffusion.cache_latents=true",
        "diffusion.optimizer.lr=1e-2",
        "diffusion.warmup_steps=1",
        f"sampling.judge={clip_folder(tmp_path)}",
        "sampling.steps=2",
        "sampling.samples_per_prompt=1",
        "sampling.novelty_train_images=8",
        "sampling.novelty_heldout_images=8",
        "trainer.max_steps=3",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "~callbacks.progress_bar",
        f"hydra.run.dir={run_dir}",
    ]
    proc = run_tool("trendgen-train-generator", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = read_record(run_dir / "generator")
    assert record["base"] == str(base) and record["global_step"] == 3 and record["vocabulary"] is None
    pipe = load_generator(run_dir / "generator", torch.device("cpu"), torch.float32)
    assert draw(pipe).shape == (1, 64, 64, 3)
