"""Benchmark: ranking the shipped caption bank, batched and cached, against one caption per forward.

On one model (ViT-B/32 geometry with random weights; its text tower is CLIP's 12-layer, 512-wide one),
the bank in conf/captions/bank.yaml and the configured `captions.look_template`, the describe stage's ranking
(`trendgen.design.look.rank_bank`: the look search over the core facets, then every other caption in the
look's context) scores texts through a `TextEmbeddingCache`:
- batched, cold cache: each set of unseen texts in `captions.batch_size` per forward (a first run);
- cached, warm: the cache file a first run saved (a second run with the same model, e.g. another llm);
- one caption per forward: the same ranking with one forward per unseen text (the original project's way).

    .venv/bin/python scripts/bench_describe.py --batch-size 256
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import REPO, base_parser, compose, report, setup_torch, stopwatch


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--bank", default=str(REPO / "conf" / "captions" / "bank.yaml"))
    parser.add_argument(
        "--batch-size", type=int, default=256, help="captions per forward (captions.batch_size)"
    )
    parser.add_argument("--model", default="clip_b32", help="model config (random weights)")
    parser.add_argument("--repeats", type=int, default=1, help="each time is the best of this many runs")
    args = parser.parse_args()
    device = setup_torch(args.threads, args.device)

    import numpy as np

    from trendgen.design.caption_bank import load_bank
    from trendgen.design.look import rank_bank
    from trendgen.inference.text_cache import TextEmbeddingCache, embed_texts
    from trendgen.model.build import load_clip

    bank = load_bank(args.bank)
    texts = [c for captions in bank.values() for c in captions]
    cfg = compose("design", [f"model={args.model}", "model.pretrained=false"])
    template = cfg.captions.look_template
    model, tokenizer, _processor = load_clip(cfg.model, captions_for_tokenizer=texts)
    model.eval().to(device)
    target = np.random.default_rng(0).standard_normal(model.config.projection_dim).astype(np.float32)
    target /= np.linalg.norm(target)
    embed_texts(model, tokenizer, texts[:8], batch_size=8)  # warm-up

    def ranking(cache_dir: str, per_forward: int) -> tuple[float, int]:
        """Seconds for one ranking of the bank, and the texts that went through the model."""
        with stopwatch(device) as t:
            cache = TextEmbeddingCache(
                cache_dir, ("bench", args.model), lambda b: embed_texts(model, tokenizer, b, per_forward)
            )
            rank_bank(bank, lambda batch: cache(batch) @ target, template)
            cache.save()
        return t["s"], cache.embedded

    runs: dict[str, list[float]] = {"batched": [], "cached": [], "single": []}
    embedded = 0
    for _ in range(max(1, args.repeats)):  # interleaved, so a change in background load hits all three
        with tempfile.TemporaryDirectory() as cold, tempfile.TemporaryDirectory() as single:
            seconds, embedded = ranking(cold, args.batch_size)
            runs["batched"].append(seconds)
            seconds, hits = ranking(cold, args.batch_size)
            assert hits == 0, "the second run should embed nothing"
            runs["cached"].append(seconds)
            runs["single"].append(ranking(single, 1)[0])
    times = {
        f"batched ({args.batch_size} per forward), cold cache": min(runs["batched"]),
        "cached (second run, same model and bank)": min(runs["cached"]),
        "one caption per forward, cold cache": min(runs["single"]),
    }
    naive = times["one caption per forward, cold cache"]
    report(
        f"describe: rank the shipped bank ({len(texts)} captions, {len(bank)} facets; {embedded} distinct "
        f"texts with the look search), {args.model} text tower (random weights), {args.threads} torch "
        f"threads, {device}",
        ["method", "seconds", "x one-per-forward"],
        [[name, s, naive / s] for name, s in times.items()],
        [],
        args,
    )


if __name__ == "__main__":
    main()
