"""`scripts/bench_peers.py generator`: trendgen-train-generator against diffusers' train_text_to_image.py.

The example ships in no package: `--diffusers-example` is its path in a diffusers checkout of the version
the peers' environment has. Both train the same UNet (`diffusion=tiny` with
`diffusion.unet.pooled_condition=false`, as the example passes no pooled text embedding) at 16 px on the
same captioned PNGs, with the same frozen text tower (a random tiny-geometry trendgen CLIP's), noise
schedule (squared cosine, v-prediction, min-SNR 5), AdamW at a constant 1e-3, fp32 (or bf16 mixed in both),
batch, workers and threads; trendgen without EMA, as the example by default. The example encodes every batch
with a VAE and has no pixel-space mode: its folder gets the cheapest `AutoencoderKL` that maps 16 px RGB to
16 px 3-channel latents (one 4-channel block, no attention, scaling factor 1), whose encode is timed apart
and reported.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

from benchlib import TRENDGEN_BIN, against, compose, interleaved, look_folder, rates, report, thread_env, wall

# Run in the peers' environment: the example's model folder from trendgen's parts, and the VAE's encode time.
MAKE_FOLDER = r"""
import json, sys, time, torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer
parts, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
unet = UNet2DConditionModel.from_pretrained(parts, subfolder="unet")
vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
    up_block_types=("UpDecoderBlock2D",), block_out_channels=(4,), layers_per_block=1, latent_channels=3,
    norm_num_groups=4, sample_size=unet.config.sample_size, scaling_factor=1.0, mid_block_add_attention=False)
text_encoder = CLIPTextModel.from_pretrained(parts, subfolder="text_encoder")
pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder,
    tokenizer=CLIPTokenizer.from_pretrained(parts, subfolder="tokenizer"), unet=unet,
    scheduler=DDPMScheduler.from_pretrained(parts, subfolder="scheduler"), safety_checker=None,
    feature_extractor=None, requires_safety_checker=False)
pipe.save_pretrained(out)
x = torch.randn(batch, 3, unet.config.sample_size, unet.config.sample_size)
with torch.no_grad():
    vae.encode(x).latent_dist.sample()
    start = time.perf_counter()
    for _ in range(5):
        vae.encode(x).latent_dist.sample()
print(json.dumps({"vae_encode_s": (time.perf_counter() - start) / 5,
                  "unet_params": sum(p.numel() for p in unet.parameters())}))
"""


def export_parts(cfg, folder: Path) -> int:
    """trendgen's UNet, scheduler, text tower and tokenizer as diffusers/transformers subfolders."""
    from transformers import CLIPTextModel

    from trendgen.generator.parts import build_parts

    parts = build_parts(cfg.diffusion)
    parts.unet.save_pretrained(folder / "unet")
    parts.noise_scheduler.save_pretrained(folder / "scheduler")
    text = CLIPTextModel(parts.text_encoder.config)  # the tower without its projection, as SD has it
    prefix = "text_model."
    weights = {
        k[len(prefix) :]: v for k, v in parts.text_encoder.state_dict().items() if k.startswith(prefix)
    }
    text.load_state_dict(weights)
    text.save_pretrained(folder / "text_encoder")
    parts.tokenizer.save_pretrained(folder / "tokenizer")
    return sum(p.numel() for p in parts.unet.parameters())


def generator(args) -> None:
    if not args.diffusers_example or not Path(args.diffusers_example).is_file():
        sys.exit(
            "bench_peers generator: --diffusers-example PATH (examples/text_to_image/train_text_to_image.py)"
        )
    steps = args.sizes or [5, 35]
    batch = args.batch_size or 128
    work = Path(args.workdir) / f"peers_generator_b{batch}"
    work.mkdir(parents=True, exist_ok=True)
    folder, _paths = look_folder(args.workdir, 1024, 64)
    rows = list(csv.DictReader((folder / "looks.csv").open()))
    images = work / "imagefolder"  # the example's `imagefolder` layout: the PNGs and metadata.jsonl
    if not images.is_dir():
        images.mkdir()
        for row in rows:
            (images / row["path"]).symlink_to((folder / row["path"]).resolve())
        lines = [json.dumps({"file_name": r["path"], "text": r["caption"]}) for r in rows]
        (images / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    clip = text_tower(Path(args.workdir), [r["caption"] for r in rows])
    overrides = [
        "data=folder", f"data.root={folder}", f"data.index={folder / 'looks.csv'}",
        f"data.batch_size={batch}", f"data.num_workers={args.workers}", f"diffusion.text_encoder={clip}",
        "diffusion.ema.enabled=false", "diffusion.unet.pooled_condition=false", "diffusion.warmup_steps=0",
        "diffusion.min_lr_ratio=1.0",
    ]  # fmt: skip
    sd_folder = work / "sd_folder"
    if not (sd_folder / "model_index.json").is_file():
        parts_dir = work / "parts"
        export_parts(compose("train_generator", overrides), parts_dir)
        made = subprocess.run(
            [args.peer_python, "-c", MAKE_FOLDER, str(parts_dir), str(sd_folder), str(batch)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        (work / "vae.json").write_text(made.stdout.strip().splitlines()[-1])
    vae = json.loads((work / "vae.json").read_text())
    env = thread_env(args.threads, args.device)
    on_gpu = ["trainer=gpu"] if args.device.startswith("cuda") else []
    ours = "bf16-mixed" if args.precision == "bf16" else "32-true"

    def trendgen(n: int) -> float:
        out = work / "trendgen_run"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [str(TRENDGEN_BIN / "trendgen-train-generator"), *overrides, f"trainer.max_steps={n}"]
        cmd += ["trainer.max_epochs=1000", "trainer.limit_val_batches=0", "logger=none"]
        cmd += [*on_gpu, f"trainer.precision={ours}"]
        cmd += [f"hydra.run.dir={out}", f"paths.output_dir={out}"]
        return wall(cmd, env)

    def example(n: int) -> float:
        out = work / "example_run"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [args.peer_python, args.diffusers_example, "--pretrained_model_name_or_path", str(sd_folder)]
        cmd += ["--train_data_dir", str(images), "--caption_column", "text", "--resolution", "16"]
        cmd += ["--train_batch_size", str(batch), "--max_train_steps", str(n), "--learning_rate", "1e-3"]
        cmd += ["--lr_scheduler", "constant", "--lr_warmup_steps", "0", "--snr_gamma", "5.0"]
        mixed = "bf16" if args.precision == "bf16" else "no"
        cmd += ["--prediction_type", "v_prediction", "--mixed_precision", mixed]
        cmd += ["--seed", "0"]
        cmd += ["--dataloader_num_workers", str(args.workers), "--output_dir", str(out)]
        cmd += ["--checkpointing_steps", "1000000", "--adam_weight_decay", "0"]
        return wall(cmd, env)

    programs = {"trendgen-train-generator": trendgen, "diffusers train_text_to_image.py": example}
    best = interleaved(programs, tuple(steps), args.repeats)
    units = (steps[0] * batch, steps[1] * batch)
    table = {name: rates({units[0]: s[steps[0]], units[1]: s[steps[1]]}, units) for name, s in best.items()}
    columns, rows = against(table, "diffusers train_text_to_image.py", "example")
    report(
        f"generator: diffusion=tiny UNet ({vae['unet_params']:,} parameters, no pooled condition) at 16 px, "
        f"batch {batch}, {args.workers} workers, {args.threads} torch threads, {args.precision}, "
        f"{args.device}",
        columns,
        rows,
        [
            f"Steady: {steps[1] - steps[0]} steps over the difference of a {steps[1]}- and a {steps[0]}-step "
            f"run's wall times; whole run: {steps[1]} steps over its wall time; best of {args.repeats} "
            f"interleaved repeats. The example's VAE encode: {vae['vae_encode_s'] * 1000:.1f} ms a batch "
            "(timed apart), in its step and not in trendgen's."
        ],
        args,
    )


def text_tower(workdir: Path, captions: list[str]) -> Path:
    """A random tiny-geometry trendgen CLIP (tokenizer learnt from the captions): the frozen text tower."""
    from trendgen.model.build import load_clip, save_clip

    folder = workdir / "bench_generator_clip"
    if not (folder / "config.json").exists():
        save_clip(folder, *load_clip(compose("train", ["model=tiny"]).model, captions_for_tokenizer=captions))
    return folder
