"""Benchmark: the design pipeline's embed stage against a naive per-image loop and forward-only compute, and
the embed stage at each `trend.precision` (32, bf16 autocast, int8 on ONNX Runtime) with its accuracy guard.

Side by side on one model (ViT-B/32 geometry with random weights: `model=clip_b32 model.pretrained=false`, or
a saved model folder: `--model PATH`) and one folder of PNGs (synthetic looks, or `--images DIR`):
- embed stage: `trendgen.inference.clip_forward.embed_files` (decode + image processor in DataLoader workers,
  batched forward);
- naive loop: per file, open, run the processor, one forward per image (the original project's way);
- forward-only: batched forwards on pixel tensors prepared beforehand: the compute limit.
Target: the embed stage at >= 0.85 of the forward-only rate.

Precision rows: the embed stage's images/s at each precision (`trendgen.inference.precision.ClipTowers`, as
the design run builds its towers; the int8 ONNX files are built once into `--cache` beforehand, outside the
timing), x the fp32 stage, and the minimum cosine of its embeddings to fp32's on the same images. With a
trained model folder: the adjusted Rand index of the k-means assignment (`trend.clusters`, the cluster
stage's k-means) to fp32's, and the overlap of the describe stage's top-k captions of the largest cluster
with fp32's. Targets (issue 12): bf16 >= 1.8x and int8 >= 3x the fp32 stage (ViT-B/32, 2 cores); with a
trained model, min cosine >= 0.999 (bf16) and >= 0.99 (int8), ARI >= 0.95.

    .venv/bin/python scripts/bench_embed.py --n 128 --batch-size 32 --workers 2 --threads 2
    .venv/bin/python scripts/bench_embed.py --model runs/demo/train/<run>/model --images <trend folder>
    .venv/bin/python scripts/bench_embed.py --quick   # a minute-long check on the tiny geometry
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import base_parser, compose, look_folder, report, setup_torch, stopwatch


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="images for the embed stage and forward-only")
    parser.add_argument("--naive-n", type=int, default=16, help="images for the (slow) naive loop")
    parser.add_argument("--px", type=int, default=256, help="side of the test PNGs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", default="auto", help="embed stage's DataLoader workers: a count or auto")
    parser.add_argument("--repeats", type=int, default=2, help="each rate is the best of this many runs")
    parser.add_argument(
        "--model", default="clip_b32", help="model config (random weights), or a saved (trained) model folder"
    )
    parser.add_argument(
        "--images", default=None, help="a folder of images to embed (default: synthetic looks)"
    )
    parser.add_argument("--precisions", default="32,bf16,int8", help="trend.precision values to compare")
    parser.add_argument("--clusters", type=int, default=5, help="k of the ARI check (trained model)")
    parser.add_argument("--top-k", type=int, default=12, help="captions compared (trained model)")
    parser.add_argument("--cache", default=None, help="ONNX cache dir (default: WORKDIR/cache)")
    parser.add_argument(
        "--precisions-only", action="store_true", help="only the precision table (no naive loop)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny geometry, 32 images, 1 repeat: a check")
    args = parser.parse_args()
    if args.quick:
        args.n, args.naive_n, args.px, args.repeats, args.batch_size = 32, 4, 64, 1, 16
        args.model = "tiny" if args.model == "clip_b32" else args.model
    device = setup_torch(args.threads, args.device)
    from trendgen.inference.clip_forward import decode_workers

    args.workers = decode_workers(args.workers, device)  # as the stage resolves trend.num_workers

    import torch
    from PIL import Image

    from trendgen.data.pixels import pixel_values
    from trendgen.inference.clip_forward import embed_files, embed_pixels
    from trendgen.model.build import load_clip, load_saved

    folder, paths = look_folder(args.workdir, args.n, args.px)
    if args.images:
        from trendgen.trends.image_files import discover_images

        paths = discover_images(args.images, "--images")
    paths = paths[: args.n]
    trained = Path(args.model).is_dir()
    if trained:
        clip = load_saved(args.model)
    else:
        cfg = compose("design", [f"model={args.model}", "model.pretrained=false"])
        captions = (folder / "looks.csv").read_text().splitlines()[1:]
        clip = load_clip(cfg.model, captions_for_tokenizer=captions)
    model, _tokenizer, processor = clip
    model.eval().to(device)

    if args.precisions_only:
        bench_precisions(args, clip, paths, device, "trained" if trained else "random weights")
        return
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

    def data_prep_only(make_pixels: Any) -> float:
        with stopwatch() as t:
            for start in range(0, len(paths), args.batch_size):
                make_pixels([Image.open(p).convert("RGB") for p in paths[start : start + args.batch_size]])
        return t["s"]

    def stage_prep() -> float:  # what the stage's workers run (trendgen.data.pixels)
        return data_prep_only(lambda images: pixel_values(processor, images))

    def processor_prep() -> float:  # transformers' image processor on the same images
        return data_prep_only(lambda images: processor(images=images, return_tensors="pt"))

    # Interleaved repeats (forward, stage, naive, forward, ...): a change in background load hits all three.
    runs: dict[str, list[float]] = {"forward": [], "stage": [], "naive": [], "prep": [], "processor": []}
    for _ in range(max(1, args.repeats)):
        steps = (
            ("forward", forward_only),
            ("stage", embed_stage),
            ("naive", naive_loop),
            ("prep", stage_prep),
            ("processor", processor_prep),
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
    processor_rate = len(paths) / min(runs["processor"])
    rows = [
        [name, rate, rate / ceiling, rate / rates["naive loop (1 image per forward)"]]
        for name, rate in rates.items()
    ]
    verdict = "meets" if stage / ceiling >= 0.85 else "misses"
    weights = "trained" if trained else "random weights"
    report(
        f"embed: {args.model} ({weights}), {len(paths)} images of {args.px}px, batch {args.batch_size}, "
        f"{args.workers} workers, {args.threads} torch threads, {device}",
        ["method", "images/s", "x forward-only", "x naive"],
        rows,
        [
            f"Embed stage at {stage / ceiling:.2f} of the forward-only rate: {verdict} the 0.85 target.",
            f"Decoding + pixel values alone, one process: {1000 / prep_rate:.2f} ms of one core per image "
            f"(trendgen.data.pixels; transformers' image processor: {1000 / processor_rate:.2f} ms); "
            f"the forward "
            f"takes {1000 * args.threads / ceiling:.0f} core-ms per image.",
        ],
        args,
    )
    bench_precisions(args, clip, paths, device, weights)


def bench_precisions(args: Any, clip: Any, paths: list[Path], device: Any, weights: str) -> None:
    """The embed stage at each precision: images/s, x fp32, min cosine to fp32 (and with a trained model,
    the ARI of the k-means assignment and the top-k caption overlap to fp32's)."""
    import numpy as np

    from trendgen.identity import folder_identity
    from trendgen.inference.clip_forward import embed_files
    from trendgen.inference.precision import ClipTowers

    if Path(args.model).is_dir():
        identity = folder_identity(args.model)
    else:  # random weights, drawn anew by each run: the ONNX cache is keyed by the weights themselves
        identity = ["bench", args.model, weights_digest(clip[0])]
    cache = args.cache or str(Path(args.workdir) / "cache")
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if "32" not in precisions:
        precisions.insert(0, "32")
    results: dict[str, dict[str, Any]] = {}
    for precision in precisions:
        towers = ClipTowers(lambda: clip, precision, identity, cache, device)
        with stopwatch() as built:
            tower = towers.tower("image")  # the ONNX export (once per model) is not part of the rate
        results[precision] = {"towers": towers, "tower": tower, "setup_s": built["s"], "seconds": []}

    def stage(tower: Any) -> tuple[float, np.ndarray]:
        with stopwatch(device) as t:
            out, used, _ = embed_files(
                tower.model, clip[2], paths, args.batch_size, args.workers, device, precision=tower.autocast
            )
        assert len(used) == len(paths)
        return t["s"], out

    for r in results.values():
        r["embeddings"] = stage(r["tower"])[1]  # warm-up (sessions, kernels, workers); the cosine's rows
    # Interleaved repeats (32, bf16, int8, 32, ...): a change in background load hits every precision.
    for _ in range(max(1, args.repeats)):
        for r in results.values():
            r["seconds"].append(stage(r["tower"])[0])
    for r in results.values():
        r["rate"] = len(paths) / min(r["seconds"])
    reference = results["32"]
    rows, notes = [], []
    for precision, r in results.items():
        cosine = float((r["embeddings"] * reference["embeddings"]).sum(axis=1).min())
        ran = r["tower"].record
        row = [
            precision,
            f"{ran['precision']} ({ran['runtime']})",
            r["rate"],
            r["rate"] / reference["rate"],
            cosine,
        ]
        if Path(args.model).is_dir():
            row += trend_agreement(args, clip, r, reference)
        rows.append(row)
        if ran["fallback_reason"]:
            notes.append(f"{precision}: {ran['fallback_reason']}")
        if r["tower"].info:
            notes.append(
                f"{precision}: ONNX files {r['tower'].info['onnx']['status']} in {r['setup_s']:.1f} s"
            )
    columns = ["trend.precision", "ran", "images/s", "x fp32 stage", "min cosine to fp32"]
    if Path(args.model).is_dir():
        columns += ["ARI to fp32", f"top-{args.top_k} caption overlap"]
    targets = {"bf16": 1.8, "int8": 3.0}
    for precision, factor in targets.items():
        if precision in results:
            speedup = results[precision]["rate"] / reference["rate"]
            verdict = "meets" if speedup >= factor else "misses"
            notes.append(f"{precision}: {speedup:.2f}x the fp32 stage: {verdict} the {factor}x target.")
    report(
        f"embed stage by trend.precision: {args.model} ({weights}), {len(paths)} images, batch "
        f"{args.batch_size}, {args.workers} workers, {args.threads} threads, {device}",
        columns,
        rows,
        notes,
        argparse_json(args, "precision"),
    )


def weights_digest(model: Any) -> str:
    """A digest of every tensor of `model`'s state (the identity of a model that has no folder)."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def argparse_json(args: Any, suffix: str) -> Any:
    """`args` with `--json` pointing at a second file (FILE.suffix.json) for the second table."""
    import copy

    second = copy.copy(args)
    if args.json:
        second.json = str(Path(args.json).with_suffix(f".{suffix}.json"))
    return second


def trend_agreement(args: Any, clip: Any, result: dict[str, Any], reference: dict[str, Any]) -> list[float]:
    """ARI of k-means on this precision's embeddings to fp32's; overlap of the describe stage's top-k
    captions for the largest cluster (the text tower at the same precision) with fp32's."""
    from sklearn.metrics import adjusted_rand_score

    labels, top = trend_of(args, clip, result)
    if "trend" not in reference:
        reference["trend"] = (labels, top) if result is reference else trend_of(args, clip, reference)
    ref_labels, ref_top = reference["trend"]
    overlap = len(set(top) & set(ref_top)) / max(1, len(ref_top))
    return [float(adjusted_rand_score(ref_labels, labels)), overlap]


def trend_of(args: Any, clip: Any, result: dict[str, Any]) -> tuple[Any, list[tuple[str, str]]]:
    """The k-means labels of this precision's embeddings and the top-k (facet, caption) of its largest
    cluster, ranked as the describe stage ranks them (the text tower at the same precision)."""
    import numpy as np

    from trendgen.design.caption_bank import load_bank
    from trendgen.design.cluster import fit_clusters
    from trendgen.design.describe import drop_unknown_words
    from trendgen.design.look import rank_bank
    from trendgen.inference.text_cache import embed_texts

    cfg = compose("design", [f"model.name_or_path={args.model}"])
    cfg.trend.n_init = 10
    labels, centroids = fit_clusters(result["embeddings"], args.clusters, cfg.trend)
    target = centroids[int(np.bincount(labels).argmax())]
    text = result["towers"].tower("text")
    bank, _ = drop_unknown_words(load_bank(cfg.captions.bank), clip[1])
    table: dict[str, np.ndarray] = {}

    def score(texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in table]
        if missing:
            vectors = embed_texts(text.model, clip[1], missing, 256, text.autocast)
            table.update(zip(missing, vectors, strict=True))
        return np.stack([table[t] for t in texts]) @ target

    look, entries = rank_bank(bank, score, cfg.captions.look_template)
    entries.sort(key=lambda e: -e["score"])  # the describe stage's `overall` list, as trend.json names it
    ranked = ([("look", look["text"])] if look else []) + [(e["facet"], e["text"]) for e in entries]
    return labels, ranked[: args.top_k]


if __name__ == "__main__":
    main()
