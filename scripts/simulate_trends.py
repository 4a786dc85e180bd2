"""Write a simulated panel of weekly trend shares as a table `trendgen-forecast` reads.

Series are drawn binomially from latent shares with a level, a trend, a yearly season and AR(1) noise, a
quarter of them rising from near 0 (`trendgen.forecast.simulate`). Wide layout by default (a date column,
then one column per series, as the F1 dataset); `--long` writes `date, series, value` rows.

    .venv/bin/python scripts/simulate_trends.py --series 300 --weeks 260 --out panel.csv
    .venv/bin/trendgen-forecast series.path=panel.csv forecast.horizon=13
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from trendgen.files import write_with
from trendgen.forecast.simulate import simulate_panel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=300)
    parser.add_argument("--weeks", type=int, default=260)
    parser.add_argument("--photos", type=int, default=400, help="photos a week behind a share (mean)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--long", action="store_true", help="date, series, value rows instead of wide columns"
    )
    parser.add_argument("--latent", default=None, help="also write the latent shares (same layout) here")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    panel = simulate_panel(args.series, args.weeks, photos=args.photos, seed=args.seed)
    write_table(Path(args.out), panel.dates, panel.names, panel.shares, args.long)
    if args.latent:
        write_table(Path(args.latent), panel.dates, panel.names, panel.latent, args.long)
    print(f"wrote {args.out}: {args.series} series x {args.weeks} weeks ({'long' if args.long else 'wide'})")


def write_table(path: Path, dates: np.ndarray, names: list[str], values: np.ndarray, long: bool) -> None:
    """A wide (date, one column per series) or long (date, series, value) CSV, written whole."""
    import pandas as pd

    if long:
        frame = pd.DataFrame(
            {
                "date": np.tile(dates.astype(str), len(names)),
                "series": np.repeat(names, len(dates)),
                "value": values.ravel(),
            }
        )
    else:
        frame = pd.DataFrame(values.T, columns=names)
        frame.insert(0, "date", dates.astype(str))
    write_with(path, lambda f: frame.to_csv(f, index=False, float_format="%.6g"))


if __name__ == "__main__":
    main()
