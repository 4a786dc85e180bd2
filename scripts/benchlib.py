"""Shared pieces of the scripts/bench_*.py benchmarks: config, test images, timing, reporting."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TRENDGEN_BIN = Path(sys.executable).parent  # trendgen's environment: its console scripts


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--workdir", default=str(REPO / ".cache" / "bench"), help="where test images are kept"
    )
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    return parser


def setup_torch(threads: int, device: str) -> Any:
    import torch

    torch.set_num_threads(threads)
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("benchmark: --device cuda asked for, but torch sees no CUDA device")
    return torch.device(device)


def compose(config_name: str, overrides: list[str]) -> Any:
    """The trendgen config `config_name` (train, design) with `overrides`, as the entrypoints compose it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from trendgen.config import CONF_DIR, register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name, overrides=overrides)


def look_folder(workdir: str | Path, n: int, px: int, seed: int = 0) -> tuple[Path, list[Path]]:
    """A folder of `n` synthetic garment PNGs (`px` square) with its looks.csv index; reused when present."""
    from trendgen.data.synthetic import write_trend_folder

    folder = Path(workdir) / f"looks_n{n}_px{px}_seed{seed}"
    paths = write_trend_folder(folder, n=n, planted=None, planted_share=0.0, seed=seed, px=px)
    return folder, paths


def sync(device: Any) -> None:
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        torch.cuda.synchronize(device)


@contextmanager
def stopwatch(device: Any = None) -> Iterator[dict[str, float]]:
    """`with stopwatch() as t: ...` then t["s"] holds the seconds (device work included)."""
    result: dict[str, float] = {}
    sync(device)
    start = time.perf_counter()
    yield result
    sync(device)
    result["s"] = time.perf_counter() - start


def best_of(repeats: int, fn: Callable[[], float]) -> float:
    """The fastest of `repeats` runs of `fn` (returns seconds): the least disturbed by other work."""
    return min(fn() for _ in range(max(1, repeats)))


def environment() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "machine": platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def report(title: str, columns: list[str], rows: list[list[Any]], notes: list[str], args: Any) -> None:
    """Print a markdown table with the exact command and environment; optionally write JSON."""
    command = " ".join(shlex.quote(a) for a in [sys.executable.replace(str(REPO) + "/", ""), *sys.argv])
    env = environment()
    lines = [f"### {title}", "", f"`{command}`", ""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    lines += ["", *notes, "", f"Environment: {json.dumps(env)}"]
    print("\n".join(lines), flush=True)
    if args.json:
        payload = {"title": title, "command": command, "columns": columns, "rows": rows, "notes": notes}
        Path(args.json).write_text(json.dumps({**payload, "environment": env}, indent=1) + "\n")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


# Whole programs (scripts/bench_peers.py): wall times of separate processes.


def thread_env(threads: int, device: str = "cpu") -> dict[str, str]:
    """A program's environment: `threads` OpenMP/MKL threads; on `cpu`, no CUDA device visible, so a peer
    that takes the GPU by itself (open_clip, clip-retrieval, accelerate) runs on the CPU as trendgen does."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop("PYTHONPATH", None)
    if not device.startswith("cuda"):
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def wall(command: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    """Seconds the program took, start to exit; its output is kept only when it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        tail = (done.stdout[-3000:] + done.stderr[-3000:]).strip()
        sys.exit(f"bench_peers: {command[0]} failed ({done.returncode}):\n{tail}")
    return seconds


def interleaved(
    programs: dict[str, Callable[[int], float]], sizes: tuple[int, int], repeats: int
) -> dict[str, dict[int, float]]:
    """Best seconds of each program at each size, the programs taking turns within every repeat; one
    untimed run of each first (file caches, per-machine measurements a program keeps)."""
    for run in programs.values():
        run(sizes[0])
    best = {name: {n: float("inf") for n in sizes} for name in programs}
    for _ in range(repeats):
        for n in sizes:
            for name, run in programs.items():
                best[name][n] = min(best[name][n], run(n))
                print(f"  {name} n={n}: {best[name][n]:.2f} s", file=sys.stderr, flush=True)
    return best


def rates(seconds: dict[int, float], units: tuple[int, int]) -> tuple[float, float]:
    """(steady units/s from the difference of the two sizes, whole-run units/s of the larger)."""
    (n1, n2), (t1, t2) = units, (seconds[units[0]], seconds[units[1]])
    return (n2 - n1) / (t2 - t1), n2 / t2


def against(table: dict[str, tuple[float, float]], peer: str, label: str) -> tuple[list[str], list[list]]:
    """Columns and rows of (steady, whole-run) images/s per program, each also as a multiple of `peer`'s."""
    steady, whole = table[peer]
    columns = ["program", "steady images/s", f"x {label}", "whole-run images/s", f"x {label}"]
    return columns, [[name, s, s / steady, w, w / whole] for name, (s, w) in table.items()]
