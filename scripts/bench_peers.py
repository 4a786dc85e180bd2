"""Benchmark: trendgen beside the tools a user would pick instead, each run as its real program.

Every contender is a separate process on the same images (or data), model geometry, batch, workers and torch
threads; repeats are interleaved; each program runs at two sizes, so its steady rate is the difference of the
two (start-up, imports and model loading cancel) and its whole-run rate is the larger size over its wall time.
The peers live in their own environments (docs/BENCHMARKS.md says how to make them), never trendgen's:

    python scripts/bench_peers.py embed --peer-python PEERS/bin/python --clip-retrieval CR/bin/clip-retrieval
    python scripts/bench_peers.py train --peer-python PEERS/bin/python
    python scripts/bench_peers.py generator --peer-python PEERS/bin/python --diffusers-example PATH

- embed: `trendgen-design design.stages=[embed]` against clip-retrieval's `inference` and a plain open_clip
  loop (scripts/peers/openclip_embed.py), ViT-B/32 or the tiny geometry;
- train: `trendgen-train` against `python -m open_clip_train.main` (scripts/peers_train.py);
- generator: `trendgen-train-generator` against diffusers' `examples/text_to_image/train_text_to_image.py`
  (scripts/peers_generator.py).
k-means against faiss runs in trendgen's own environment: scripts/bench_kmeans.py.

`--device cuda --precision bf16` runs every comparison on the GPU with bf16 mixed precision in each program
(scripts/gpu_check.sh does when PEER_PYTHON is set); on `cpu` no program sees a CUDA device.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    REPO,
    TRENDGEN_BIN,
    against,
    base_parser,
    interleaved,
    look_folder,
    rates,
    report,
    thread_env,
    wall,
)

# open_clip geometry of each trendgen model config: the same widths, depths, heads, patch and QuickGELU.
OPEN_CLIP_GEOMETRY = {
    "clip_b32": ("ViT-B-32-quickgelu", None),
    "tiny": (
        "trendgen-tiny",
        {
            "embed_dim": 96,
            "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "layers": 3, "width": 96, "head_width": 24, "patch_size": 8},
            "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 96, "heads": 4, "layers": 2},
        },
    ),
}


def subset(folder: Path, paths: list[Path], n: int, work: Path) -> Path:
    """A folder of links to the first `n` images."""
    out = work / f"images_{n}"
    if not out.is_dir():
        out.mkdir(parents=True)
        for p in paths[:n]:
            (out / p.name).symlink_to(p.resolve())
    return out


def embed(args) -> None:
    work = Path(args.workdir) / f"peers_embed_{args.model}"
    work.mkdir(parents=True, exist_ok=True)
    folder, paths = look_folder(args.workdir, args.sizes[1], args.px)
    images = {n: subset(folder, paths, n, work) for n in args.sizes}
    hf_folder, oc_name, ckpt, config_dir = prepare_embed_models(args, folder, work)
    env = thread_env(args.threads, args.device)
    ours = "bf16" if args.precision == "bf16" else "32"
    common = [
        "design.stages=[embed]",
        "design.store=null",
        "design.reuse=false",
        f"model.name_or_path={hf_folder}",
    ]
    common += [f"trend.batch_size={args.batch_size}", f"paths.cache_dir={work / 'cache'}"]

    def trendgen(extra: list[str]) -> Callable[[int], float]:
        def run(n: int) -> float:
            out = work / "design_run"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [
                str(TRENDGEN_BIN / "trendgen-design"),
                *common,
                f"trend.images={images[n]}",
                f"hydra.run.dir={out}",
            ]
            return wall(cmd + extra, env)

        return run

    def open_clip_loop(n: int) -> float:
        cmd = [args.peer_python, str(REPO / "scripts/peers/openclip_embed.py"), "--model", oc_name]
        cmd += ["--pretrained", str(ckpt), "--images", str(images[n]), "--out", str(work / "oc.npy")]
        cmd += [
            "--batch-size",
            str(args.batch_size),
            "--workers",
            str(args.workers),
            "--threads",
            str(args.threads),
        ]
        cmd += ["--device", args.device, "--precision", args.precision]
        return wall(cmd + (["--config-dir", str(config_dir)] if config_dir else []), env)

    def clip_retrieval(n: int) -> float:
        out = work / "cr_out"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [
            args.clip_retrieval,
            "inference",
            "--input_dataset",
            str(images[n]),
            "--output_folder",
            str(out),
        ]
        cmd += ["--input_format", "files", "--enable_text", "False", "--batch_size", str(args.batch_size)]
        cmd += ["--num_prepro_workers", str(args.workers), "--clip_model", f"open_clip:{oc_name}/{ckpt}"]
        return wall(cmd, env)

    programs = {
        f"trendgen-design embed ({args.precision}, {args.workers} workers)": trendgen(
            [f"trend.precision={ours}", f"trend.num_workers={args.workers}"]
        ),
        "trendgen-design embed at its defaults (precision, workers auto)": trendgen([]),
        f"plain open_clip loop ({args.workers} workers)": open_clip_loop,
    }
    if args.clip_retrieval:
        programs[f"clip-retrieval inference ({args.workers} workers)"] = clip_retrieval
    best = interleaved(programs, tuple(args.sizes), args.repeats)
    table = {name: rates(s, tuple(args.sizes)) for name, s in best.items()}
    columns, rows = against(table, f"plain open_clip loop ({args.workers} workers)", "plain loop")
    report(
        f"embed: {args.model} geometry (random weights), {args.sizes[1]} PNGs of {args.px} px, batch "
        f"{args.batch_size}, {args.threads} torch threads, {args.precision}, {args.device}",
        columns,
        rows,
        [
            f"Steady: ({args.sizes[1]} - {args.sizes[0]}) images over the difference of the two runs' wall "
            f"times; whole run: {args.sizes[1]} images over its wall time (imports, model load, start-up "
            f"included); best of {args.repeats} interleaved repeats. trendgen runs transformers' CLIP in "
            f"its own environment; the peers open_clip's `{oc_name}` in theirs."
        ],
        args,
    )


def prepare_embed_models(args, folder: Path, work: Path) -> tuple[Path, str, Path, Path | None]:
    """trendgen's model folder and the peers' open_clip checkpoint of the same geometry (random weights)."""
    oc_name, oc_config = OPEN_CLIP_GEOMETRY[args.model]
    hf_folder, ckpt, config_dir = work / "hf_model", work / "open_clip.pt", None
    if not (hf_folder / "config.json").is_file():
        from benchlib import compose

        from trendgen.model.build import load_clip, save_clip

        captions = [line.rsplit(",", 1)[-1] for line in (folder / "looks.csv").read_text().splitlines()[1:]]
        cfg = compose("design", [f"model={args.model}", "model.pretrained=false"])
        save_clip(hf_folder, *load_clip(cfg.model, captions_for_tokenizer=captions))
    if oc_config:
        config_dir = work / "open_clip_configs"
        config_dir.mkdir(exist_ok=True)
        (config_dir / f"{oc_name}.json").write_text(json.dumps(oc_config))
        install_open_clip_config(args.clip_retrieval, config_dir / f"{oc_name}.json")
    script = (
        "import sys, open_clip, torch\n"
        "if len(sys.argv) > 3: open_clip.add_model_config(sys.argv[3])\n"
        "m = open_clip.create_model(sys.argv[1], pretrained=None)\n"
        "torch.save(m.state_dict(), sys.argv[2])\n"
    )
    if not ckpt.is_file():
        extra = [str(config_dir)] if config_dir else []
        subprocess.run(
            [args.peer_python, "-c", script, oc_name, str(ckpt), *extra], check=True, capture_output=True
        )
    return hf_folder, oc_name, ckpt, config_dir


def install_open_clip_config(clip_retrieval: str | None, config: Path) -> None:
    """clip-retrieval names models only (`open_clip:NAME/CKPT`): the tiny geometry goes into its open_clip's
    model_configs folder, where open_clip documents adding an architecture."""
    if not clip_retrieval:
        return
    python = str(Path(clip_retrieval).parent / "python")
    where = subprocess.run(
        [python, "-c", "import open_clip, os; print(os.path.dirname(open_clip.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    shutil.copy(config, Path(where) / "model_configs" / config.name)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("what", choices=["embed", "train", "generator"])
    parser.add_argument("--peer-python", required=True, help="python of the peers' environment")
    parser.add_argument("--clip-retrieval", default=None, help="clip-retrieval's console script (embed)")
    parser.add_argument("--diffusers-example", default=None, help="train_text_to_image.py (generator)")
    parser.add_argument("--model", default="clip_b32", choices=sorted(OPEN_CLIP_GEOMETRY))
    parser.add_argument("--sizes", type=int, nargs=2, default=None, help="the two run sizes")
    parser.add_argument("--px", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: mixed, in each")
    args = parser.parse_args()
    if args.what == "embed":
        args.sizes = args.sizes or [64, 320]
        args.batch_size = args.batch_size or 64
        embed(args)
    elif args.what == "train":
        from peers_train import train

        train(args)
    else:
        from peers_generator import generator

        generator(args)


if __name__ == "__main__":
    main()
