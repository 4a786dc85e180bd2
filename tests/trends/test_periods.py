"""Periods: listed folders, a dated CSV or JSONL index binned by unit, the two-set case, bad rows refused."""

from __future__ import annotations

import json
from datetime import date

import pytest
from omegaconf import OmegaConf
from PIL import Image

from trendgen.config import TrendConfig
from trendgen.errors import TrendgenError
from trendgen.trends.periods import parse_date, period_of, trend_periods


def trend(**values):
    return OmegaConf.merge(OmegaConf.structured(TrendConfig), values)


def photos(folder, n):
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / f"{i}.png")
    return folder


def test_listed_folders_are_periods_in_the_order_given(tmp_path):
    spring, summer = photos(tmp_path / "spring", 2), photos(tmp_path / "summer", 3)
    periods = trend_periods(
        trend(periods=[{"label": "SS24", "images": str(spring)}, {"label": "SS25", "images": str(summer)}])
    )
    assert [(p.label, p.position, len(p.files)) for p in periods] == [("SS24", 0, 2), ("SS25", 1, 3)]
    assert periods[1].files[0] == summer / "0.png"


def test_the_two_set_mode_is_the_two_period_case(tmp_path):
    then, now = photos(tmp_path / "then", 2), photos(tmp_path / "now", 1)
    periods = trend_periods(trend(images=str(now), baseline_images=str(then)))
    assert [(p.label, p.position, len(p.files)) for p in periods] == [("baseline", 0, 2), ("current", 1, 1)]
    assert [p.label for p in trend_periods(trend(images=str(now)))] == ["current"]
    with pytest.raises(TrendgenError, match=r"replaces trend\.images"):
        trend_periods(trend(images=str(now), periods=[{"label": "a", "images": str(then)}]))


def test_a_csv_index_is_binned_by_quarter_in_time_order_with_gaps_kept_on_the_axis(tmp_path):
    index = tmp_path / "photos.csv"
    rows = ["path,date,source", "a.jpg,2024-05-02,ig", "b.jpg,2024-01-31,ig", "c.jpg,2024-02-01T09:30:00,x"]
    rows += ["/abs/d.jpg,2024-11-20,x", "e.jpg,2024-06,x"]
    index.write_text("\n".join(rows) + "\n")
    periods = trend_periods(trend(periods=str(index), period_unit="quarter"))
    assert [p.label for p in periods] == ["2024-Q1", "2024-Q2", "2024-Q4"]
    assert [p.position - periods[0].position for p in periods] == [0, 1, 3]  # Q3 had no photos
    assert [f.name for f in periods[0].files] == ["b.jpg", "c.jpg"]
    assert periods[1].files == (tmp_path / "a.jpg", tmp_path / "e.jpg")  # relative to the index's folder
    assert str(periods[2].files[0]) == "/abs/d.jpg"


def test_seasons_month_and_year_labels():
    assert period_of(date(2024, 3, 1), "season")[1] == "SS2024"
    assert period_of(date(2024, 8, 31), "season")[1] == "SS2024"
    assert period_of(date(2024, 9, 1), "season")[1] == "AW2024"
    assert period_of(date(2025, 2, 28), "season")[1] == "AW2024"  # January and February close last AW
    assert period_of(date(2025, 2, 28), "season")[0] + 1 == period_of(date(2025, 3, 1), "season")[0]
    assert period_of(date(2024, 12, 1), "month") == (2024 * 12 + 11, "2024-12")
    assert period_of(date(2024, 12, 1), "year") == (2024, "2024")
    assert parse_date("2024-03") == date(2024, 3, 1)


def test_a_jsonl_index(tmp_path):
    index = tmp_path / "photos.jsonl"
    lines = [{"path": "a.png", "date": "2023-07-01"}, {"path": "b.png", "date": "2024-07-01"}]
    index.write_text("\n".join(json.dumps(row) for row in lines) + "\n\n")
    periods = trend_periods(trend(periods=str(index), period_unit="year"))
    assert [(p.label, len(p.files)) for p in periods] == [("2023", 1), ("2024", 1)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "path,date\na.jpg,2024-01-01\nb.jpg,31/01/2024\n",
            r"photos\.csv:3: date '31/01/2024' is not an ISO date",
        ),
        ("path,when\na.jpg,2024-01-01\n", r"photos\.csv:1: the header row lacks column\(s\) date"),
        ("path,date\na.jpg,2024-01-01\n,2024-01-02\n", r"photos\.csv:3: a row needs both a path and a date"),
    ],
)
def test_bad_rows_are_refused_with_their_line(tmp_path, text, message):
    index = tmp_path / "photos.csv"
    index.write_text(text)
    with pytest.raises(TrendgenError, match=message):
        trend_periods(trend(periods=str(index)))


def test_bad_settings_are_refused(tmp_path):
    index = tmp_path / "photos.jsonl"
    index.write_text('{"path": "a.png", "date": "2024-01-01"}\nnot json\n')
    with pytest.raises(TrendgenError, match=r"photos\.jsonl:2: not valid JSON"):
        trend_periods(trend(periods=str(index)))
    with pytest.raises(TrendgenError, match="period_unit must be one of"):
        trend_periods(trend(periods=str(index), period_unit="week"))
    with pytest.raises(TrendgenError, match="no such index file"):
        trend_periods(trend(periods=str(tmp_path / "missing.csv")))
    folder = photos(tmp_path / "p", 1)
    with pytest.raises(TrendgenError, match="given twice"):
        trend_periods(
            trend(periods=[{"label": "a", "images": str(folder)}, {"label": "a", "images": str(folder)}])
        )
    with pytest.raises(TrendgenError, match=r"trend.periods\[0\] needs a label and images"):
        trend_periods(trend(periods=[{"images": str(folder)}]))
