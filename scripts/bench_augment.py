"""Benchmark: `data.augment` in the DataLoader workers (Pillow, per image) against on the batch (kornia).

Side by side in one run, on the same batches of real dataset rows (Fashion-MNIST's 28 px images for the tiny
CLIP's 32 px input; synthetic garments drawn at `--photo-px` for a ViT-B/32's 224 px input), one thread:
- plain: the collate of an evaluation loader (decode + CLIP image processor);
- workers: the training collate with `SampleAugment` (random resized crop straight to the input size, flip,
  rotation, then the processor);
- batch: the plain collate, then `BatchAugment` (kornia: the same recipe on the processed tensor), which
  runs in the training process after the batch reached the device.
Reported: milliseconds per batch (best of `--repeats`), and what the augmentation adds over plain per image.

    .venv/bin/python scripts/bench_augment.py --threads 1
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import base_parser, best_of, compose, report, setup_torch, stopwatch


def datamodule_for(data_overrides: list[str], image_size: int, augment: list[str]):
    from trendgen.data.datamodule import FashionDataModule
    from trendgen.model.build import image_processor_for
    from trendgen.model.tokenizer import train_caption_tokenizer

    cfg = compose("train", [*data_overrides, "data.augment.enabled=true", *augment])
    datamodule = FashionDataModule(cfg.data)
    datamodule.image_processor = image_processor_for(image_size)
    datamodule.tokenizer = train_caption_tokenizer(datamodule.dataset("val").captions, vocab_size=400)
    return datamodule


def time_case(name: str, data_overrides: list[str], image_size: int, args, device) -> list[list]:
    import torch

    from trendgen.data.augment import BatchAugment

    datamodule = datamodule_for(data_overrides, image_size, args.augment)
    split = "val"  # rows of one split for all three: only what is done to them differs
    dataset = datamodule.dataset(split)
    samples = [dataset[i % len(dataset)] for i in range(args.batch_size)]  # decoded once, outside the timing
    plain = datamodule.collate_for(split)
    augmented = datamodule.collate_for(split, augment=True)
    kornia = BatchAugment(datamodule.cfg.augment, datamodule.image_processor).to(device)

    def timed(fn) -> float:
        def once() -> float:
            with stopwatch(device) as t:
                fn()
            return t["s"]

        fn()  # warm-up (kornia builds its kernels, Pillow its tables)
        return best_of(args.repeats, once)

    torch.manual_seed(0)
    plain_s = timed(lambda: plain(samples))
    workers_s = timed(lambda: augmented(samples))
    pixels = plain(samples)["pixel_values"].to(device)
    kornia_only_s = timed(lambda: kornia(pixels))
    batch_s = plain_s + kornia_only_s
    per_image = 1000.0 / args.batch_size
    rows = [
        [name, "plain (no augmentation)", plain_s * 1000, 0.0],
        [name, "workers (Pillow, per image)", workers_s * 1000, (workers_s - plain_s) * per_image],
        [name, f"batch (kornia, on the batch, {device.type})", batch_s * 1000, kornia_only_s * per_image],
    ]
    return rows


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--photo-px", type=int, default=256, help="side of the synthetic garment images")
    parser.add_argument("--fashion-mnist-root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument(
        "--augment", nargs="*", default=[], help="data.augment overrides, e.g. data.augment.hue=0.1"
    )
    args = parser.parse_args()
    device = setup_torch(args.threads, args.device)
    cases = [
        ("Fashion-MNIST 28 px -> 32", ["data=fashion_mnist", f"data.root={args.fashion_mnist_root}"], 32),
        (
            f"synthetic {args.photo_px} px -> 224",
            ["data=synthetic", f"data.image_px={args.photo_px}", "data.val_size=64"],
            224,
        ),
    ]
    rows = [row for name, overrides, size in cases for row in time_case(name, overrides, size, args, device)]
    notes = [
        f"Batches of {args.batch_size} decoded images; best of {args.repeats}. The default recipe: crop "
        "scale 0.8-1, flip 0.5, rotation +-10 degrees, no colour jitter "
        f"(overrides: {' '.join(args.augment) or 'none'}).",
        "workers runs in DataLoader workers, beside the training step; batch runs in the training process "
        "(on the accelerator when there is one).",
    ]
    report(
        "augmentation: workers (Pillow) against batch (kornia)",
        ["images", "where", "ms/batch", "added ms/image"],
        rows,
        notes,
        args,
    )


if __name__ == "__main__":
    main()
