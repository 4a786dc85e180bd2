"""Benchmark: trendgen-train's training step against a naive loop, and the share of step time spent on data.

Side by side on one model geometry and one folder of PNGs (`data=folder`):
- trendgen-train: the recipe's own datamodule and LightningModule (`trendgen.recipes.train.build_training`)
  in a Lightning Trainer: decoding and the image processor in DataLoader workers, captions tokenized once;
- naive loop: a plain PyTorch loop, the processor and the tokenizer in the collate function of a loader with
  no workers, CLIP's built-in loss, AdamW, the same parameters frozen (`model.freeze`).
Reported: images per second over the timed steps (after warm-up) and the share of each step spent waiting for
the next batch.

    .venv/bin/python scripts/bench_train.py --model tiny --batch-size 64 --steps 20
    .venv/bin/python scripts/bench_train.py --model clip_b32 --batch-size 32 --steps 6
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import base_parser, compose, look_folder, report, setup_torch, sync


class StepClock:
    """Per optimizer step: seconds waiting for the batch and seconds computing it (warm-up steps dropped)."""

    def __init__(self, warmup: int, device) -> None:
        self.warmup, self.device = warmup, device
        self.steps: list[tuple[float, float]] = []  # (wait, compute)
        self._last_end: float | None = None
        self._start = 0.0

    def batch_start(self) -> None:
        """Lightning hook side: the batch is fetched; the gap since the last step's end was spent on data."""
        sync(self.device)
        self._start = time.perf_counter()

    def batch_end(self) -> None:
        sync(self.device)
        end = time.perf_counter()
        if self._last_end is not None:
            self.steps.append((self._start - self._last_end, end - self._start))
        self._last_end = end

    def summary(self, batch_size: int) -> tuple[float, float]:
        """(images per second, share of step time waiting for data) over the steps after warm-up."""
        timed = self.steps[self.warmup :]
        wait, total = sum(w for w, _ in timed), sum(w + c for w, c in timed)
        return batch_size * len(timed) / total, wait / total


def lightning_run(cfg, args, device) -> tuple[float, float]:
    from trendgen.recipes.train import build_training

    datamodule, module, _tokenizer, _processor = build_training(cfg)
    return timed_fit(module, datamodule, cfg.data.batch_size, args, device)


def timed_fit(module, datamodule, batch_size: int, args, device) -> tuple[float, float]:
    """(images/s, share waiting for data) of a bare Lightning fit: no validation, logging or checkpoints."""
    import pytorch_lightning as pl

    clock = StepClock(args.warmup, device)

    class Timer(pl.Callback):
        def on_train_batch_start(self, *_args) -> None:
            clock.batch_start()

        def on_train_batch_end(self, *_args) -> None:
            clock.batch_end()

    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision=args.precision,
        max_steps=args.warmup + args.steps + 1,  # the first step only starts the clock
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Timer()],
    )
    trainer.fit(module, datamodule=datamodule)
    return clock.summary(batch_size)


def naive_run(cfg, args, device) -> tuple[float, float]:
    import torch
    from torch.utils.data import DataLoader

    from trendgen.data import build_dataset
    from trendgen.model.build import load_clip
    from trendgen.model.freeze import apply_freeze

    dataset = build_dataset(cfg.data, cfg.data.train_split)
    model, tokenizer, processor = load_clip(cfg.model, captions_for_tokenizer=list(dataset.captions))
    apply_freeze(model, cfg.model.freeze)  # the same trainable parameters as trendgen-train
    model.train().to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def collate(samples):
        images = [s["image"] for s in samples]
        captions = [dataset.captions[s["index"]] for s in samples]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        tokens = tokenizer(captions, padding=True, truncation=True, max_length=77, return_tensors="pt")
        return pixels, tokens["input_ids"], tokens["attention_mask"]

    loader = DataLoader(
        dataset, batch_size=cfg.data.batch_size, shuffle=True, drop_last=True, collate_fn=collate
    )
    clock = StepClock(args.warmup, device)
    half = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(args.precision)
    autocast = torch.autocast(device.type, dtype=half or torch.float32, enabled=half is not None)
    batches = iter(loader)
    clock.batch_end()  # the clock starts now: the first wait is the first batch's loading
    for _ in range(args.warmup + args.steps):
        try:
            pixels, input_ids, attention_mask = next(batches)
        except StopIteration:
            batches = iter(loader)
            pixels, input_ids, attention_mask = next(batches)
        clock.batch_start()
        with autocast:
            out = model(
                pixel_values=pixels.to(device),
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                return_loss=True,
            )
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.batch_end()
    return clock.summary(cfg.data.batch_size)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="tiny", help="model config (random weights), e.g. tiny or clip_b32"
    )
    parser.add_argument("--n", type=int, default=512, help="images in the training folder")
    parser.add_argument("--px", type=int, default=256, help="side of the training PNGs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of trendgen-train")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--precision", default="32-true", help="32-true or bf16-mixed")
    args = parser.parse_args()
    device = setup_torch(args.threads, args.device)

    folder, _paths = look_folder(args.workdir, args.n, args.px)
    cfg = compose(
        "train",
        [
            "data=folder",
            f"data.root={folder}",
            f"data.index={folder / 'looks.csv'}",
            f"data.batch_size={args.batch_size}",
            f"data.num_workers={args.workers}",
            f"model={args.model}",
            "model.pretrained=false",
        ],
    )
    ours_rate, ours_wait = lightning_run(cfg, args, device)
    naive_rate, naive_wait = naive_run(cfg, args, device)
    report(
        f"train: {args.model} (random weights), batch {args.batch_size}, {args.px}px PNGs, "
        f"{args.steps} timed steps, {args.threads} torch threads, {args.precision}, {device}",
        ["loop", "images/s", "share of step waiting for data", "x naive"],
        [
            [f"trendgen-train ({args.workers} workers)", ours_rate, ours_wait, ours_rate / naive_rate],
            ["naive (processor in collate, no workers)", naive_rate, naive_wait, 1.0],
        ],
        [],
        args,
    )


if __name__ == "__main__":
    main()
