"""Benchmark: trendgen-train-generator's training step against a plain diffusers-example loop, and sampling.

Side by side on one UNet (`diffusion=tiny`, a random text-tower CLIP) and one folder of PNGs (`data=folder`):
- trendgen-train-generator: the recipe's datamodule and `DiffusionTrainer` in a Lightning Trainer: decoding
  and resizing in DataLoader workers, captions tokenized once, each distinct caption through the frozen text
  tower once (`diffusion.cache_text_embeddings`);
- plain loop, as diffusers' train_text_to_image.py does it: the processor and the tokenizer in the collate
  of a loader with no workers, the text encoder run on every batch, `torch.randn` noise, the same UNet and
  AdamW.
Reported: training images/s over the timed steps (after warm-up), the share of each step spent waiting for the
next batch, and sampling images/s of the exported pipeline at `sampling.steps` with guidance.

    .venv/bin/python scripts/bench_generator.py --threads 2 --steps 30
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import StepClock, timed_fit
from benchlib import base_parser, compose, look_folder, report, setup_torch


def text_encoder_folder(workdir: Path, captions: list[str]) -> Path:
    """A random tiny-geometry CLIP with a tokenizer learnt from the captions, saved like trendgen-train."""
    from trendgen.model.build import load_clip, save_clip

    folder = workdir / "bench_generator_clip"
    if not (folder / "config.json").exists():
        cfg = compose("train", ["model=tiny"])
        save_clip(folder, *load_clip(cfg.model, captions_for_tokenizer=captions))
    return folder


def recipe_run(cfg, args, device) -> tuple[float, float]:
    from trendgen.recipes.train_generator import build_generator_training

    datamodule, module, _captions = build_generator_training(cfg, with_judge=False)
    return timed_fit(module, datamodule, cfg.data.batch_size, args, device)


def plain_run(cfg, args, device) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from trendgen.data import build_dataset
    from trendgen.generator.parts import build_parts
    from trendgen.generator.pipeline import encode_text, pixel_processor

    dataset = build_dataset(cfg.data, cfg.data.train_split)
    parts = build_parts(cfg.diffusion)
    unet, scheduler, tokenizer = parts.unet.train().to(device), parts.noise_scheduler, parts.tokenizer
    text_encoder = parts.text_encoder.to(device)
    processor = pixel_processor(int(cfg.diffusion.resolution))
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3)

    def collate(samples):
        pixels = processor(images=[s["image"] for s in samples], return_tensors="pt")["pixel_values"]
        captions = [dataset.captions[s["index"]] for s in samples]
        tokens = tokenizer(
            captions, padding="max_length", max_length=parts.max_length, truncation=True, return_tensors="pt"
        )
        return pixels, tokens["input_ids"], tokens["attention_mask"]

    loader = DataLoader(
        dataset, batch_size=cfg.data.batch_size, shuffle=True, drop_last=True, collate_fn=collate
    )
    clock = StepClock(args.warmup, device)
    half = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(args.precision)
    autocast = torch.autocast(device.type, dtype=half or torch.float32, enabled=half is not None)
    batches = iter(loader)
    clock.batch_end()
    for _ in range(args.warmup + args.steps):
        try:
            pixels, input_ids, attention_mask = next(batches)
        except StopIteration:
            batches = iter(loader)
            pixels, input_ids, attention_mask = next(batches)
        clock.batch_start()
        x0 = pixels.to(device)
        with torch.no_grad():
            hidden, pooled = encode_text(text_encoder, input_ids.to(device), attention_mask.to(device))
        noise = torch.randn_like(x0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), device=device)
        target = scheduler.get_velocity(x0, noise, t)
        with autocast:
            pred = unet(
                scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=hidden, class_labels=pooled
            ).sample
        F.mse_loss(pred.float(), target).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.batch_end()
    return clock.summary(cfg.data.batch_size)


def sampling_rate(cfg, n: int, device) -> float:
    import torch

    from trendgen.generator.export import assemble_pipeline
    from trendgen.generator.parts import build_parts

    pipe = assemble_pipeline(build_parts(cfg.diffusion)).to(device)
    prompts = ["a red striped dress"] * n
    start = time.perf_counter()
    pipe(
        prompt=prompts,
        num_inference_steps=int(cfg.sampling.steps),
        guidance_scale=float(cfg.sampling.guidance),
        generator=torch.Generator().manual_seed(0),
    )
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024, help="images in the training folder")
    parser.add_argument("--px", type=int, default=64, help="side of the training PNGs")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers of the recipe")
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--samples", type=int, default=64, help="images drawn for the sampling rate")
    parser.add_argument("--precision", default="32-true", help="32-true or bf16-mixed (the recipe)")
    args = parser.parse_args()
    device = setup_torch(args.threads, args.device)

    folder, _paths = look_folder(args.workdir, args.n, args.px)
    import csv

    captions = [row["caption"] for row in csv.DictReader((folder / "looks.csv").open())]
    clip = text_encoder_folder(Path(args.workdir), captions)
    with tempfile.TemporaryDirectory() as out:
        cfg = compose(
            "train_generator",
            [
                "data=folder",
                f"data.root={folder}",
                f"data.index={folder / 'looks.csv'}",
                f"data.batch_size={args.batch_size}",
                f"data.num_workers={args.workers}",
                f"diffusion.text_encoder={clip}",
                "diffusion.ema.enabled=false",
                f"paths.output_dir={out}",
            ],
        )
        ours_rate, ours_wait = recipe_run(cfg, args, device)
    plain_rate, plain_wait = plain_run(cfg, args, device)
    sample_rate = sampling_rate(cfg, args.samples, device)
    report(
        f"generator: diffusion=tiny ({cfg.diffusion.resolution}px), batch {args.batch_size}, "
        f"{args.px}px PNGs, "
        f"{args.steps} timed steps, {args.threads} torch threads, {args.precision}, {device}",
        ["loop", "training images/s", "share of step waiting for data", "x plain"],
        [
            [
                f"trendgen-train-generator ({args.workers} workers)",
                ours_rate,
                ours_wait,
                ours_rate / plain_rate,
            ],
            [
                "plain diffusers-example loop (collate in process, text encoder every step)",
                plain_rate,
                plain_wait,
                1.0,
            ],
        ],
        [
            f"Sampling: {sample_rate:.1f} images/s ({args.samples} images in one call, "
            f"{cfg.sampling.steps} DPM-Solver steps, guidance {cfg.sampling.guidance})."
        ],
        args,
    )


if __name__ == "__main__":
    main()
