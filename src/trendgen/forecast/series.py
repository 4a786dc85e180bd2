"""Tables of trend series: read a wide or long CSV/Parquet file into one checked panel.

- wide: a date column first, then one column per series (the F1 dataset's layout);
- long: columns `date`, `series`, `value` (any order, other columns ignored).

Every series shares the table's dates, which are evenly spaced (a day, a week, a month, a quarter or a year
apart) and unique. A problem is one `TrendgenError` naming the file, the series and the rows: a first
column that is not dates, duplicate dates, missing or negative values, uneven spacing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trendgen.errors import TrendgenError

# Spacing of the dates (in days, the smallest and largest gap) -> (unit, season length).
_SPACINGS = (
    ((1, 1), "day", 7),
    ((7, 7), "week", 52),
    ((28, 31), "month", 12),
    ((89, 92), "quarter", 4),
    ((365, 366), "year", 1),
)
SEASON_LENGTHS = {"day": 7, "week": 52, "month": 12, "quarter": 4, "season": 2, "year": 1}


@dataclass(frozen=True)
class SeriesTable:
    """S series over T evenly spaced dates."""

    dates: np.ndarray  # [T] datetime64[D], increasing
    names: list[str]
    values: np.ndarray  # [S, T] float64
    unit: str  # day | week | month | quarter | year (the dates' spacing)

    @property
    def season_length(self) -> int:
        """Periods in a year's cycle for the dates' spacing (52 weeks, 12 months, ...; 1: none)."""
        return SEASON_LENGTHS[self.unit]

    def future_dates(self, horizon: int) -> np.ndarray:
        """The `horizon` dates after the last one, at the table's spacing (a table dated at month ends stays
        at month ends)."""
        import pandas as pd

        last = pd.Timestamp(self.dates[-1])
        if self.unit in ("month", "quarter", "year"):
            months = {"month": 1, "quarter": 3, "year": 12}[self.unit]
            at_month_end = all(pd.Timestamp(d).is_month_end for d in self.dates)
            steps = [
                last + (pd.offsets.MonthEnd(k * months) if at_month_end else pd.DateOffset(months=k * months))
                for k in range(1, horizon + 1)
            ]
            return np.array([np.datetime64(step.date(), "D") for step in steps])
        step = {"day": 1, "week": 7}[self.unit]
        return self.dates[-1] + step * np.arange(1, horizon + 1)


def _spacing_unit(dates: np.ndarray, path: Path) -> str:
    if len(dates) < 2:
        return "week"
    gaps = np.diff(dates).astype(int)
    months = dates.astype("datetime64[M]").astype(int)
    for (low, high), unit, _ in _SPACINGS:
        if gaps.min() >= low and gaps.max() <= high:
            step = {"month": 1, "quarter": 3, "year": 12}.get(unit)
            if step is None or np.all(np.diff(months) == step):  # calendar steps, not 28-day ones
                return unit
    i = int(np.argmax(gaps != gaps[0])) + 1 if np.any(gaps != gaps[0]) else 1
    raise TrendgenError(
        f"{path}: the dates are not a day, week, calendar month, quarter or year apart: {dates[i - 1]} to "
        f"{dates[i]} ({gaps[i - 1]} days)"
    )


def _parse_dates(column: object, path: Path, name: str) -> np.ndarray:
    import pandas as pd

    values = pd.Series(column)
    if pd.api.types.is_numeric_dtype(values):
        raise TrendgenError(f"{path}: column {name!r} is not dates (numbers: {values.iloc[0]!r}, ...)")
    try:
        parsed = pd.to_datetime(values, errors="raise", format="mixed")
    except (ValueError, TypeError) as err:
        raise TrendgenError(f"{path}: column {name!r} is not dates ({str(err).splitlines()[0]})") from None
    if parsed.isna().any():
        raise TrendgenError(
            f"{path}: column {name!r} has an empty date on line {int(parsed.isna().argmax()) + 2}"
        )
    if (parsed != parsed.dt.normalize()).any():
        raise TrendgenError(f"{path}: column {name!r} has times of day: a day is the finest period")
    return parsed.to_numpy().astype("datetime64[D]")


def _read_frame(path: Path):
    import pandas as pd

    if not path.is_file():
        raise TrendgenError(f"series.path: no such file {path}")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as err:
        raise TrendgenError(
            f"{path}: cannot read it as CSV or Parquet ({str(err).splitlines()[0]})"
        ) from None


def _check_values(values: np.ndarray, dates: np.ndarray, names: list[str], path: Path) -> None:
    for what, bad in (("missing", ~np.isfinite(values)), ("negative", np.isfinite(values) & (values < 0))):
        if bad.any():
            s = int(np.argmax(bad.any(axis=1)))
            rows = [str(d) for d in dates[bad[s]][:5]]
            more = f" and {int(bad[s].sum()) - 5} more" if bad[s].sum() > 5 else ""
            raise TrendgenError(
                f"{path}: series {names[s]!r} has {what} values on {', '.join(rows)}{more} "
                f"({int(bad.any(axis=1).sum())} series in all)"
            )


def read_series(path: str | Path, layout: str = "auto") -> SeriesTable:
    """The table at `path` (CSV or Parquet) as a `SeriesTable`; `layout` wide | long | auto (long when it
    has `date`, `series` and `value` columns)."""
    path = Path(path)
    frame = _read_frame(path)
    columns = [str(c) for c in frame.columns]
    if layout == "auto":
        layout = "long" if {"date", "series", "value"} <= set(columns) else "wide"
    if layout not in ("wide", "long"):
        raise TrendgenError(f"series.layout must be wide, long or auto, not {layout!r}")
    if layout == "long":
        missing = {"date", "series", "value"} - set(columns)
        if missing:
            raise TrendgenError(
                f"{path}: a long table needs columns date, series, value; missing {sorted(missing)}"
            )
        frame = frame.assign(date=_parse_dates(frame["date"], path, "date"))
        dup = frame.duplicated(["series", "date"])
        if dup.any():
            row = frame[dup].iloc[0]
            day = np.datetime64(row["date"], "D")
            raise TrendgenError(f"{path}: series {str(row['series'])!r} has date {day} twice")
        frame = frame.pivot(index="date", columns="series", values="value").sort_index()
        dates = frame.index.to_numpy().astype("datetime64[D]")
    else:
        if len(columns) < 2:
            raise TrendgenError(f"{path}: a wide table needs a date column and at least one series column")
        dates = _parse_dates(frame.iloc[:, 0], path, columns[0])
        frame = frame.iloc[:, 1:]
        if len(np.unique(dates)) < len(dates):
            values, counts = np.unique(dates, return_counts=True)
            raise TrendgenError(f"{path}: date {values[counts > 1][0]} appears more than once")
        order = np.argsort(dates, kind="stable")
        dates, frame = dates[order], frame.iloc[order]
    names = [str(c) for c in frame.columns]
    try:
        values = frame.to_numpy(dtype=np.float64).T
    except (ValueError, TypeError):
        bad = next(c for c in frame.columns if frame[c].dtype == object)
        raise TrendgenError(f"{path}: series {str(bad)!r} has values that are not numbers") from None
    if values.shape[1] < 2:
        raise TrendgenError(f"{path}: the table has {values.shape[1]} date(s); a forecast needs at least 2")
    _check_values(values, dates, names, path)
    return SeriesTable(dates=dates, names=names, values=values, unit=_spacing_unit(dates, path))
