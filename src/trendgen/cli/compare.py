"""trendgen-compare SWEEP_DIR: every sweep point's overrides and final metrics (training runs) or trend
headline (design runs: k, target share and growth, top caption, best design score) in one table (md, CSV)."""

from __future__ import annotations

import argparse
import sys

from trendgen.errors import exit_on_user_error
from trendgen.tracking.compare import compare_sweep


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="trendgen-compare",
        description="Gather every point of a Hydra sweep (trendgen-train -m ..., trendgen-design -m ...) "
        "into one table. Prints markdown and writes compare.md and compare.csv into the sweep dir (never "
        "overwriting: compare-1.md, ...).",
    )
    parser.add_argument("sweep_dir", help="the multirun dir, e.g. runs/train/multiruns/2025-01-01_12-00-00")
    parser.add_argument(
        "--sort",
        dest="sort_by",
        default=None,
        help="metric to sort by (default val/recall_mean; design runs e.g. best_design_score)",
    )
    parser.add_argument(
        "--ascending", action="store_true", help="sort ascending (default: best = largest first)"
    )
    parser.add_argument("--metrics", default=None, help="comma-separated metric columns (default: all)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    markdown, md_path, csv_path = compare_sweep(
        args.sweep_dir, sort_by=args.sort_by, descending=not args.ascending, metrics=metrics
    )
    sys.stdout.write(markdown)
    print(f"\nwrote {md_path} and {csv_path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    exit_on_user_error(run)(parse_args(argv))


if __name__ == "__main__":
    main()
