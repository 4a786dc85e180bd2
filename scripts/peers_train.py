"""`scripts/bench_peers.py train`: trendgen-train against open_clip's `open_clip_train.main` (ViT-B/32).

Both train the same geometry (`model=clip_b32 model.pretrained=false` and open_clip's `ViT-B-32-quickgelu`
from a random checkpoint) for one epoch over the same captioned PNGs, fp32 (or bf16 mixed in both), the same
batch, workers and threads, with the same trainable set: the last vision block and the vision output norm,
both projections and the temperature (trendgen's `model/freeze=original`; open_clip's `--lock-image
--lock-image-unlocked-groups 2 --lock-text --lock-text-unlocked-layers 1`). Neither validates or tests
(trendgen's scoring of the exported weights for metrics.json is off: open_clip has no evaluation data here);
each saves its model at the end.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

from benchlib import TRENDGEN_BIN, against, interleaved, look_folder, rates, report, thread_env, wall


def indexes(folder: Path, sizes: list[int], work: Path) -> dict[int, tuple[Path, Path]]:
    """Per size: trendgen's index (path, caption) and open_clip's CSV (filepath, title), the same rows."""
    rows = list(csv.DictReader((folder / "looks.csv").open()))
    out = {}
    for n in sizes:
        ours, theirs = work / f"looks_{n}.csv", work / f"open_clip_{n}.csv"
        with ours.open("w", newline="") as a, theirs.open("w", newline="") as b:
            wa, wb = csv.writer(a), csv.writer(b)
            wa.writerow(["path", "caption"])
            wb.writerow(["filepath", "title"])
            for row in rows[:n]:
                wa.writerow([row["path"], row["caption"]])
                wb.writerow([str(folder / row["path"]), row["caption"]])
        out[n] = (ours, theirs)
    return out


def train(args) -> None:
    sizes = args.sizes or [64, 320]
    batch = args.batch_size or 32
    work = Path(args.workdir) / "peers_train"
    work.mkdir(parents=True, exist_ok=True)
    folder, _paths = look_folder(args.workdir, sizes[1], args.px)
    index = indexes(folder, sizes, work)
    ckpt = work / "open_clip.pt"
    if not ckpt.is_file():
        script = "import sys, open_clip, torch\n"
        script += "torch.save(open_clip.create_model(sys.argv[1]).state_dict(), sys.argv[2])"
        subprocess.run([args.peer_python, "-c", script, "ViT-B-32-quickgelu", str(ckpt)], check=True)
    env = thread_env(args.threads, args.device)
    on_gpu = ["trainer=gpu"] if args.device.startswith("cuda") else []
    ours = "bf16-mixed" if args.precision == "bf16" else "32-true"
    theirs = "amp_bf16" if args.precision == "bf16" else "fp32"

    def trendgen(n: int) -> float:
        out = work / "trendgen_run"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [
            str(TRENDGEN_BIN / "trendgen-train"),
            "model=clip_b32",
            "model.pretrained=false",
            "data=folder",
            *on_gpu,
            f"trainer.precision={ours}",
        ]
        cmd += [f"data.root={folder}", f"data.index={index[n][0]}", f"data.batch_size={batch}"]
        cmd += [f"data.num_workers={args.workers}", "trainer.max_epochs=1", "trainer.limit_val_batches=0"]
        cmd += ["+trainer.limit_test_batches=0"]  # metrics.json's scoring of the export: open_clip has none
        cmd += ["logger=none", f"hydra.run.dir={out}", f"paths.output_dir={out}"]
        return wall(cmd, env)

    def open_clip(n: int) -> float:
        logs = work / "open_clip_logs"
        shutil.rmtree(logs, ignore_errors=True)
        cmd = [args.peer_python, "-m", "open_clip_train.main", "--train-data", str(index[n][1])]
        cmd += ["--dataset-type", "csv", "--csv-separator", ",", "--csv-img-key", "filepath"]
        cmd += ["--csv-caption-key", "title", "--model", "ViT-B-32-quickgelu", "--pretrained", str(ckpt)]
        cmd += ["--batch-size", str(batch), "--epochs", "1", "--workers", str(args.workers)]
        cmd += ["--precision", theirs, "--lock-image", "--lock-image-unlocked-groups", "2", "--lock-text"]
        cmd += ["--lock-text-unlocked-layers", "1", "--lock-text-freeze-layer-norm", "--warmup", "0"]
        cmd += ["--logs", str(logs), "--name", "bench", "--seed", "0"]
        return wall(cmd, env)

    programs = {"trendgen-train": trendgen, "open_clip_train.main": open_clip}
    best = interleaved(programs, tuple(sizes), args.repeats)
    table = {name: rates(s, tuple(sizes)) for name, s in best.items()}
    columns, rows = against(table, "open_clip_train.main", "open_clip")
    report(
        f"train: ViT-B/32 geometry (random weights), one epoch of {sizes[1]} PNGs of {args.px} px, batch "
        f"{batch}, {args.workers} workers, {args.threads} torch threads, {args.precision}, {args.device}",
        columns,
        rows,
        [
            f"Steady: ({sizes[1]} - {sizes[0]}) images over the difference of the two runs' wall times; "
            f"whole run: {sizes[1]} images over its wall time; best of {args.repeats} interleaved repeats. "
            "Trainable: the last vision block and output norm, both projections, the temperature, in both."
        ],
        args,
    )
