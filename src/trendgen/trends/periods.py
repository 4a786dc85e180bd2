"""The periods a design run compares: `trend.periods`, or the sets `trend.baseline_images` and `trend.images`.

`trend.periods` is either an ordered list of `{label, images}` (each `images` a folder or a text file of
paths, like `trend.images`) or the path of one index file, CSV (a header with `path` and `date` columns) or
JSONL (one object per line with `path` and `date`), whose photos are binned by `trend.period_unit`:

- `month` (`2024-03`), `quarter` (`2024-Q1`), `year` (`2024`),
- `season`: the fashion seasons, `SS2024` (spring/summer, March to August) and `AW2024` (autumn/winter,
  September 2024 to February 2025).

Dates are ISO (`2024-03-17`, `2024-03-17T10:00:00`, or `2024-03`); a bad one is refused with its file and
line. A calendar period without photos is left out, but keeps its place on the time axis (`position`), so a
growth per period is per calendar period. Without `trend.periods`, `trend.baseline_images` and `trend.images`
are the two periods `baseline` and `current` (or `trend.images` alone the one period `current`).

Kept free of heavy imports so that a wrong path or date is reported at once, before torch loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from trendgen.data.index_files import index_records
from trendgen.errors import TrendgenError
from trendgen.trends.image_files import discover_images

PERIOD_UNITS = ("month", "quarter", "season", "year")


@dataclass(frozen=True)
class Period:
    """One period: its label, its place on the time axis and its image files."""

    label: str
    position: int
    files: tuple[Path, ...]


def parse_date(value: str) -> date:
    """An ISO date, datetime or year-month (`2024-03`: its first day)."""
    text = str(value).strip()
    try:
        return datetime.fromisoformat(text).date() if "T" in text or " " in text else date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"date {value!r} is not an ISO date (YYYY-MM-DD or YYYY-MM)") from None


def period_of(day: date, unit: str) -> tuple[int, str]:
    """(position on a calendar axis of `unit`s, label) of the period holding `day`."""
    if unit == "month":
        return day.year * 12 + day.month - 1, f"{day.year}-{day.month:02d}"
    if unit == "quarter":
        quarter = (day.month - 1) // 3
        return day.year * 4 + quarter, f"{day.year}-Q{quarter + 1}"
    if unit == "year":
        return day.year, str(day.year)
    if unit == "season":
        if 3 <= day.month <= 8:
            return day.year * 2, f"SS{day.year}"
        year = day.year if day.month >= 9 else day.year - 1  # January and February close last year's AW
        return year * 2 + 1, f"AW{year}"
    raise TrendgenError(f"trend.period_unit must be one of {', '.join(PERIOD_UNITS)}, not {unit!r}")


def read_period_index(path: Path, unit: str) -> list[Period]:
    """The periods of a CSV/JSONL index of dated photos, binned by `unit`, in time order."""
    period_of(date(2000, 1, 1), unit)  # a wrong unit is refused before the file is read
    bins: dict[int, tuple[str, list[Path]]] = {}
    try:
        rows = index_records(path, ("path", "date"), "trend.periods: the index")
    except (OSError, UnicodeDecodeError) as err:
        raise TrendgenError(f"trend.periods: cannot read {path}: {err}") from None
    for number, row in rows:
        if not row.get("path") or not row.get("date"):
            raise TrendgenError(f"{path}:{number}: a row needs both a path and a date")
        try:
            day = parse_date(row["date"])
        except ValueError as err:
            raise TrendgenError(f"{path}:{number}: {err}") from None
        position, label = period_of(day, unit)
        file = Path(str(row["path"])).expanduser()
        bins.setdefault(position, (label, []))[1].append(file if file.is_absolute() else path.parent / file)
    if not bins:
        raise TrendgenError(f"trend.periods: the index {path} names no photos")
    return [Period(label, position, tuple(files)) for position, (label, files) in sorted(bins.items())]


def _listed_periods(entries: Any) -> list[Period]:
    periods, labels = [], set()
    for i, entry in enumerate(entries):
        if not hasattr(entry, "get") or not entry.get("label") or not entry.get("images"):
            raise TrendgenError(f"trend.periods[{i}] needs a label and images (a folder or a list file)")
        label = str(entry["label"])
        if label in labels:
            raise TrendgenError(f"trend.periods: the label {label!r} is given twice")
        labels.add(label)
        files = discover_images(entry["images"], f"trend.periods[{i}] ({label})")
        periods.append(Period(label, i, tuple(files)))
    if not periods:
        raise TrendgenError("trend.periods is an empty list: give at least one {label, images}")
    return periods


def trend_periods(trend: Any) -> list[Period]:
    """The periods of a design run, in time order (the last is the current one)."""
    spec = trend.get("periods")
    if spec:
        if trend.images or trend.baseline_images:
            raise TrendgenError(
                "trend.periods replaces trend.images and trend.baseline_images: set one or the other"
            )
        if isinstance(spec, str):
            index = Path(spec).expanduser()
            if not index.is_file():
                raise TrendgenError(f"trend.periods: no such index file: {index}")
            return read_period_index(index, str(trend.get("period_unit", "month")))
        return _listed_periods(spec)
    current = discover_images(trend.images, "trend.images")
    if not trend.baseline_images:
        return [Period("current", 0, tuple(current))]
    baseline = discover_images(trend.baseline_images, "trend.baseline_images")
    return [Period("baseline", 0, tuple(baseline)), Period("current", 1, tuple(current))]


def period_list_files(trend: Any) -> list[Path]:
    """The list and index files that name a run's photos (their contents are part of the embed key)."""
    spec = trend.get("periods")
    if spec:
        named = [spec] if isinstance(spec, str) else [e.get("images") for e in spec]
    else:
        named = [trend.images, trend.baseline_images]
    return [Path(str(s)).expanduser() for s in named if s and Path(str(s)).expanduser().is_file()]


def period_rows(index: dict[str, Any]) -> tuple[list[dict[str, Any]], np.ndarray]:
    """An embed index's periods in time order and each row's period number."""
    periods = index["periods"]
    number = {p["label"]: i for i, p in enumerate(periods)}
    return periods, np.array([number[s] for s in index["sets"]], dtype=np.int64)
