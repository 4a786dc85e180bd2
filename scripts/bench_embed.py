"""Benchmark: the design pipeline's embed stage against a naive per-image loop and forward-only compute.

Side by side on one model (ViT-B/32 geometry with random weights: `model=clip_b32 model.pretrained=false`) and
one folder of PNGs:
- embed stage: `trendgen.clip_inference.embed_files` (decode + image processor in DataLoader workers,
  batched forward);
- naive loop: per file, open, run the processor, one forward per image (the original project's way);
- forward-only: batched forwards on pixel tensors prepared beforehand: the compute limit.
Target: the embed stage at >= 0.85 of the forward-only rate.

    .venv/bin/python scripts/bench_embed.py --n 128 --batch-size 64 --workers 2
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import base_parser, compose, look_folder, report, setup_torch, stopwatch


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="images for the embed stage and forward-only")
    parser.add_argument("--naive-n", type=int, default=16, help="images for the (slow) naive loop")
    parser.add_argument("--px", type=int, default=256, help="side of the test PNGs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the embed stage")
    parser.add_argument("--repeats", type=int, default=2, help="each rate is the best of this many runs")
    parser.add_argument("--model", default="clip_b32", help="model config (random weights)")
    args = parser.parse_args()
    device = setup_torch(args.threads, args.device)

    import torch
    from PIL import Image

    from trendgen.clip_inference import embed_files, embed_pixels
    from trendgen.model.build import load_clip

    folder, paths = look_folder(args.workdir, args.n, args.px)
    paths = paths[: args.n]
    cfg = compose("design", [f"model={args.model}", "model.pretrained=false"])
    captions = (folder / "looks.csv").read_text().splitlines()[1:]
    model, _tokenizer, processor = load_clip(cfg.model, captions_for_tokenizer=captions)
    model.eval().to(device)

    # Pixels prepared once, outside any timing, for the forward-only rate.
    pixels = processor(images=[Image.open(p).convert("RGB") for p in paths], return_tensors="pt")[
        "pixel_values"
    ]
    embed_pixels(model, pixels[: args.batch_size], device)  # warm-up (allocator, kernels)

    def forward_only() -> float:
        with stopwatch(device) as t:
            for start in range(0, len(pixels), args.batch_size):
                embed_pixels(model, pixels[start : start + args.batch_size], device)
        return t["s"]

    def embed_stage() -> float:
        with stopwatch(device) as t:
            out, used, skipped = embed_files(
                model, processor, paths, batch_size=args.batch_size, num_workers=args.workers, device=device
            )
        assert len(used) == len(paths) and not skipped and out.shape[0] == len(paths)
        return t["s"]

    @torch.inference_mode()
    def naive_loop() -> float:
        with stopwatch(device) as t:
            for path in paths[: args.naive_n]:
                image = Image.open(path).convert("RGB")
                one = processor(images=image, return_tensors="pt")["pixel_values"].to(device)
                model.get_image_features(pixel_values=one)
        return t["s"]

    def data_prep_only() -> float:
        with stopwatch() as t:
            for start in range(0, len(paths), args.batch_size):
                images = [Image.open(p).convert("RGB") for p in paths[start : start + args.batch_size]]
                processor(images=images, return_tensors="pt")
        return t["s"]

    # Interleaved repeats (forward, stage, naive, forward, ...): a change in background load hits all three.
    runs: dict[str, list[float]] = {"forward": [], "stage": [], "naive": [], "prep": []}
    for _ in range(max(1, args.repeats)):
        steps = (
            ("forward", forward_only),
            ("stage", embed_stage),
            ("naive", naive_loop),
            ("prep", data_prep_only),
        )
        for name, fn in steps:
            runs[name].append(fn())
    rates = {
        "forward-only (ready tensors)": len(paths) / min(runs["forward"]),
        "embed stage (embed_files)": len(paths) / min(runs["stage"]),
        "naive loop (1 image per forward)": min(args.naive_n, len(paths)) / min(runs["naive"]),
    }
    ceiling = rates["forward-only (ready tensors)"]
    stage = rates["embed stage (embed_files)"]
    prep_rate = len(paths) / min(runs["prep"])
    rows = [
        [name, rate, rate / ceiling, rate / rates["naive loop (1 image per forward)"]]
        for name, rate in rates.items()
    ]
    verdict = "meets" if stage / ceiling >= 0.85 else "misses"
    report(
        f"embed: {args.model} (random weights), {len(paths)} PNGs of {args.px}px, batch {args.batch_size}, "
        f"{args.workers} workers, {args.threads} torch threads, {device}",
        ["method", "images/s", "x forward-only", "x naive"],
        rows,
        [
            f"Embed stage at {stage / ceiling:.2f} of the forward-only rate: {verdict} the 0.85 target.",
            f"Decoding + image processor alone, one process: {prep_rate:.1f} images/s "
            f"({1000 / prep_rate:.1f} ms of one core per image; the forward takes "
            f"{1000 * args.threads / ceiling:.0f} core-ms per image).",
        ],
        args,
    )


if __name__ == "__main__":
    main()
