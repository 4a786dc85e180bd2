"""Benchmark: gradient caching (`model.contrastive_batch`) against one true batch: weights, peak memory, time.

Each way runs one training step in a fresh process (the recipe's datamodule and module in a Lightning
Trainer, the same data and seed): a true batch of `--batch` rows, and `model.contrastive_batch=--batch` in
micro-batches of `--micro`. Reported: the largest weight difference after the step (AdamW; the key biases,
whose gradient is exactly zero, apart), the step's peak memory above the process's size before it (maxrss),
and the step's seconds.

    .venv/bin/python scripts/bench_grad_cache.py --batch 512 --micro 64
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import base_parser, compose, report, setup_torch


def worker(args) -> None:
    import pytorch_lightning as pl
    import torch

    from trendgen.recipes.train import build_training

    overrides = [f"model={args.model}", "model.pretrained=false", "data=synthetic", f"data.size={args.batch}"]
    overrides += ["data.val_size=16", "data.test_size=16", "data.num_workers=0"]
    if args.worker == "cached":
        overrides += [f"data.batch_size={args.micro}", f"model.contrastive_batch={args.batch}"]
    else:
        overrides += [f"data.batch_size={args.batch}"]
    cfg = compose("train", overrides)
    pl.seed_everything(0)
    datamodule, module, _tokenizer, _processor = build_training(cfg)
    clock: dict[str, float] = {}

    class Step(pl.Callback):
        def on_train_batch_start(self, *_a) -> None:
            clock["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            clock["start"] = time.perf_counter()

        def on_train_batch_end(self, *_a) -> None:
            clock["s"] = time.perf_counter() - clock["start"]
            clock["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    trainer = pl.Trainer(
        accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[Step()],
        gradient_clip_val=None if args.worker == "cached" else cfg.trainer.gradient_clip_val,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    torch.save({n: p.detach() for n, p in module.named_parameters()}, args.out)
    print(json.dumps({"seconds": clock["s"], "peak_mib": (clock["peak"] - clock["rss"]) / 1024}))


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--micro", type=int, default=64)
    parser.add_argument("--worker", default=None, help=argparse_hidden())
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    setup_torch(args.threads, args.device)
    if args.worker:
        return worker(args)
    import torch

    results, weights = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for way in ("true", "cached"):
            out = f"{tmp}/{way}.pt"
            cmd = [sys.executable, __file__, "--worker", way, "--out", out, "--model", args.model]
            cmd += ["--batch", str(args.batch), "--micro", str(args.micro), "--threads", str(args.threads)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[way] = json.loads(done.stdout.strip().splitlines()[-1])
            weights[way] = torch.load(out)
    diffs = {
        n: (weights["cached"][n] - w).abs().max().item()
        for n, w in weights["true"].items()
        if "k_proj.bias" not in n
    }
    worst = max(diffs, key=diffs.get)
    rows = [
        [f"one batch of {args.batch}", results["true"]["peak_mib"], results["true"]["seconds"], 0.0],
        [
            f"contrastive_batch={args.batch}, micro-batches of {args.micro}",
            results["cached"]["peak_mib"],
            results["cached"]["seconds"],
            diffs[worst],
        ],
    ]
    report(
        f"gradient caching: model={args.model}, one AdamW step, {args.threads} torch threads",
        ["way", "step peak MiB above the start", "step seconds", "max weight difference"],
        rows,
        [
            f"Peak ratio {results['cached']['peak_mib'] / results['true']['peak_mib']:.2f}, time ratio "
            f"{results['cached']['seconds'] / results['true']['seconds']:.2f}; largest difference in {worst}."
        ],
        args,
    )


def argparse_hidden() -> str:
    return "internal: run one way in this process"


if __name__ == "__main__":
    main()
