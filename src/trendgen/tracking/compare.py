"""Gather every point of a Hydra sweep into one table (markdown and CSV), for users without W&B.

A sweep point is a directory holding `.hydra/overrides.yaml`; its metrics come from the `metrics.json` the
train recipe writes at the end of a run, or else from the last logged value of each column of its CSV logger's
`metrics.csv` (an unfinished or failed point). A trendgen-design run (a point with `trend.json`) gives k, the
target cluster's share and growth (label and slope, when trend.json has them), the top caption and the best
design's rerank score (`trendgen.tracking.trend_record.design_summary`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from trendgen.errors import TrendgenError
from trendgen.tracking.trend_record import design_summary

METRICS_FILE = "metrics.json"
TREND_FILE = "trend.json"
# A design run's columns, in this order (the text ones are not sortable).
DESIGN_COLUMNS = ("k", "target_share", "target_growth_label", "target_growth_slope", "top_caption")
DESIGN_COLUMNS += ("best_design_score",)
_SKIP_PARTS = {".submitit", "wandb", "checkpoints", "model", ".hydra"}
_METRIC_ORDER = ("val/", "test/", "train/")
_BOOKKEEPING = ("epoch", "step")


@dataclass
class SweepPoint:
    """One finished or unfinished run of a sweep."""

    path: Path
    overrides: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)  # columns that are words (a design's top caption)
    status: str = "no metrics"  # finished | partial | no metrics
    num: int | None = None  # hydra.job.num: the point's place in the sweep


def _read_overrides(point_dir: Path) -> dict[str, str]:
    items = yaml.safe_load((point_dir / ".hydra" / "overrides.yaml").read_text()) or []
    overrides: dict[str, str] = {}
    for item in items:
        key, _, value = str(item).partition("=")
        overrides[key] = value
    return overrides


def _read_job_num(point_dir: Path) -> int | None:
    try:
        hydra_cfg = yaml.safe_load((point_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]
        return int(hydra_cfg["job"]["num"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None


def _as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _read_metrics_json(path: Path) -> dict[str, float]:
    data = json.loads(path.read_text())
    if isinstance(data, dict) and isinstance(data.get("metrics"), dict):
        data = data["metrics"]
    if not isinstance(data, dict):
        return {}
    numbers = {str(k): _as_number(v) for k, v in data.items()}
    return {k: v for k, v in numbers.items() if v is not None}


def _read_metrics_csv(path: Path) -> dict[str, float]:
    """The last logged value of every column of a Lightning CSVLogger metrics.csv."""
    last: dict[str, float] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                number = _as_number(value) if value not in (None, "") else None
                if key and number is not None:
                    last[key] = number
    return last


def _find_metrics_csv(point_dir: Path) -> Path | None:
    found = [
        p
        for p in point_dir.rglob("metrics.csv")
        if not _SKIP_PARTS.intersection(p.relative_to(point_dir).parts)
    ]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _read_design(point: SweepPoint, trend_file: Path) -> SweepPoint:
    """A design run's columns from its trend.json."""
    try:
        trend = json.loads(trend_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        point.status = f"unreadable {TREND_FILE}"
        return point
    summary = design_summary(trend) if isinstance(trend, dict) else {}
    for name in DESIGN_COLUMNS:
        value = summary.get(name)
        if isinstance(value, str):
            point.text[name] = value
        elif (number := _as_number(value)) is not None:
            point.metrics[name] = number
    point.status = "finished"
    return point


def read_point(point_dir: Path) -> SweepPoint:
    """Overrides and final metrics of one sweep point (a training run, or a design run: trend.json)."""
    point = SweepPoint(path=point_dir, overrides=_read_overrides(point_dir), num=_read_job_num(point_dir))
    if (point_dir / TREND_FILE).is_file():
        return _read_design(point, point_dir / TREND_FILE)
    metrics_json = point_dir / METRICS_FILE
    metrics_csv = _find_metrics_csv(point_dir)
    if metrics_csv is not None:
        point.metrics = _read_metrics_csv(metrics_csv)
        point.status = "partial"
    if metrics_json.is_file():
        try:
            point.metrics.update(_read_metrics_json(metrics_json))
            point.status = "finished"
        except (json.JSONDecodeError, UnicodeDecodeError):
            point.status = "partial" if point.metrics else "unreadable metrics.json"
    return point


def find_points(sweep_dir: str | Path) -> list[SweepPoint]:
    """Every sweep point under `sweep_dir` (points may nest when an override value holds a '/')."""
    root = Path(sweep_dir).expanduser()
    if not root.is_dir():
        raise TrendgenError(f"sweep dir {str(root)!r} does not exist or is not a directory")
    points = []
    for overrides_file in sorted(root.rglob(".hydra/overrides.yaml")):
        point_dir = overrides_file.parent.parent
        rel_parts = point_dir.relative_to(root).parts
        if _SKIP_PARTS.intersection(rel_parts):
            continue
        points.append(read_point(point_dir))
    if not points:
        raise TrendgenError(f"no sweep points (directories with .hydra/overrides.yaml) under {str(root)!r}")
    return points


def _metric_sort_key(name: str) -> tuple[int, int, str]:
    if name in DESIGN_COLUMNS:
        return 0, DESIGN_COLUMNS.index(name), name
    for rank, prefix in enumerate(_METRIC_ORDER, start=1):
        if name.startswith(prefix):
            return rank, 0, name
    return (len(_METRIC_ORDER) + 1 + (1 if name in _BOOKKEEPING else 0)), 0, name


@dataclass
class Comparison:
    """The sweep as a table: swept overrides, shared overrides, metric columns and one row per point."""

    swept: list[str]
    shared: dict[str, str]
    metrics: list[str]
    points: list[SweepPoint]

    def row(self, point: SweepPoint, root: Path) -> dict[str, object]:
        values: dict[str, object] = {
            "job": "" if point.num is None else point.num,
            "point": str(point.path.relative_to(root)) or ".",
            "status": point.status,
        }
        values.update({key: point.overrides.get(key, "") for key in self.swept})
        values.update({name: point.metrics.get(name, point.text.get(name)) for name in self.metrics})
        return values


def build_comparison(
    points: list[SweepPoint],
    sort_by: str | None = None,
    descending: bool = True,
    metrics: list[str] | None = None,
) -> Comparison:
    """Split overrides into swept (differ between points) and shared, pick metric columns, sort the points."""
    keys: list[str] = []
    for point in points:
        keys += [key for key in point.overrides if key not in keys]
    swept = [key for key in keys if len({p.overrides.get(key) for p in points}) > 1]
    shared = {key: points[0].overrides[key] for key in keys if key not in swept}
    numbers = {name for p in points for name in p.metrics}
    available = sorted(numbers | {name for p in points for name in p.text}, key=_metric_sort_key)
    if metrics:
        unknown = [name for name in metrics if name not in available]
        if unknown:
            raise TrendgenError(f"no point logged {', '.join(unknown)}; available: {', '.join(available)}")
        available = list(metrics)
    if sort_by is None and "val/recall_mean" in available:
        sort_by = "val/recall_mean"
    if sort_by is not None:
        if sort_by not in numbers:
            sortable = ", ".join(name for name in available if name in numbers)
            raise TrendgenError(
                f"cannot sort by {sort_by!r}: no point logged it as a number; sortable: {sortable}"
            )
        with_value = [p for p in points if sort_by in p.metrics]
        with_value.sort(key=lambda p: p.metrics[sort_by], reverse=descending)
        points = with_value + [p for p in points if sort_by not in p.metrics]
    return Comparison(swept=swept, shared=shared, metrics=available, points=points)


def _format(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def to_markdown(comparison: Comparison, root: Path) -> str:
    """A GitHub-flavoured markdown table, the shared overrides above it (point dirs are in the CSV)."""
    columns = ["job", "status", *comparison.swept, *comparison.metrics]
    lines = [f"# Sweep {root.name}", ""]
    if comparison.shared:
        shared = " ".join(f"`{k}={v}`" for k, v in comparison.shared.items())
        lines += [f"Shared overrides: {shared}", ""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for point in comparison.points:
        row = comparison.row(point, root)
        lines.append("| " + " | ".join(_format(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def to_csv(comparison: Comparison, root: Path) -> str:
    """One row per point: every override (swept and shared) and every metric, full precision."""
    columns = ["job", "point", "status", *comparison.swept, *comparison.shared, *comparison.metrics]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for point in comparison.points:
        row = comparison.row(point, root)
        row.update(comparison.shared)
        writer.writerow({c: ("" if row.get(c) is None else row.get(c)) for c in columns})
    return buffer.getvalue()


def write_new(path: Path, text: str) -> Path:
    """Write `text` to `path`, or to `stem-1.suffix`, `stem-2.suffix`, ... when it exists: never overwrite."""
    candidate, n = path, 0
    while True:
        try:
            with candidate.open("x") as handle:
                handle.write(text)
            return candidate
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")


def compare_sweep(
    sweep_dir: str | Path,
    sort_by: str | None = None,
    descending: bool = True,
    metrics: list[str] | None = None,
) -> tuple[str, Path, Path]:
    """Compare the points of a sweep; write compare.md and compare.csv. Returns (markdown, md, csv)."""
    root = Path(sweep_dir).expanduser()
    comparison = build_comparison(find_points(root), sort_by=sort_by, descending=descending, metrics=metrics)
    markdown = to_markdown(comparison, root)
    md_path = write_new(root / "compare.md", markdown)
    csv_path = write_new(root / "compare.csv", to_csv(comparison, root))
    return markdown, md_path, csv_path
