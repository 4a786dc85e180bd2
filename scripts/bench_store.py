"""What the stage store costs: a design run whose stages are all reused, from its own run dir and from the
store into a fresh run dir, beside the first run that computes them (embed, cluster, describe, prompt).

    python scripts/bench_store.py --images 400 --repeats 3

Each figure is the best of `--repeats` in-process runs (start-up excluded). Reuse checks the sha256 of every
file it reuses and copies what it restores, so its cost grows with the artifacts' bytes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.design import base_overrides, compose_design, make_tiny_clip, write_looks

try:
    from trendgen.recipes.design import run_design
except ImportError:  # a checkout from before the redesign
    from trendgen.pipeline import run_design  # type: ignore[no-redef]


def timed(overrides: list[str]) -> tuple[float, dict]:
    """Seconds of the design run alone (the config is composed beforehand)."""
    cfg = compose_design(overrides)
    start = time.perf_counter()
    trend = run_design(cfg)
    return time.perf_counter() - start, trend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_store_"))
    model, looks = make_tiny_clip(tmp / "model"), write_looks(tmp / "looks", n=args.images)
    common = ["design.stages=[embed,cluster,describe,prompt]", "generator=none"]
    rows: dict[str, list[float]] = {
        "first run": [],
        "rerun, same run dir": [],
        "fresh run dir, from store": [],
    }
    for r in range(args.repeats):  # each repeat computes its stages into a store of its own
        store = f"design.store={tmp / f'store{r}'}"
        first = [*base_overrides(tmp, model, looks, out=f"first{r}"), *common, store]
        fresh = [*base_overrides(tmp, model, looks, out=f"fresh{r}"), *common, store]
        for name, overrides in zip(rows, (first, first, fresh), strict=True):
            seconds, trend = timed(overrides)
            assert name == "first run" or set(trend["stage_status"].values()) == {"reused"}
            rows[name].append(seconds)
    print(f"| {args.images} images, tiny CLIP | best of {args.repeats} (s) |\n|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {min(values):.3f} |")


if __name__ == "__main__":
    main()
