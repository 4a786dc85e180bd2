"""The rows of a CSV or JSONL index file (caption indexes, dated photo indexes), each with its line number.

Kept free of heavy imports: a bad row is reported before torch loads.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from trendgen.errors import TrendgenError

JSONL_SUFFIXES = (".jsonl", ".ndjson")


def index_records(path: Path, required: tuple[str, ...], what: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) of each non-blank row of a CSV (with a header) or JSONL file, by its suffix.

    `required`: the columns a CSV header must have (and a JSON record is told to carry); `what` names the
    file in the message for an unknown suffix, e.g. "caption index".
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_records(path, required)
    if suffix in JSONL_SUFFIXES:
        return _jsonl_records(path, required)
    raise TrendgenError(f"{what} {path} must be a .csv or .jsonl file")


def _csv_records(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if missing:
            raise TrendgenError(
                f"{path}:1: the header row lacks column(s) {', '.join(missing)} (has {columns})"
            )
        reader.fieldnames = columns
        records = []
        try:
            for record in reader:
                if None in record:
                    raise TrendgenError(f"{path}:{reader.line_num}: more fields than the header has columns")
                if any((v or "").strip() for v in record.values()):
                    records.append((reader.line_num, record))
        except csv.Error as err:
            raise TrendgenError(f"{path}:{reader.line_num}: malformed CSV ({err})") from None
    return records


def _jsonl_records(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, Any]]]:
    records = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise TrendgenError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise TrendgenError(f"{path}:{line_no}: expected a JSON object with {' and '.join(required)}")
            records.append((line_no, record))
    return records
