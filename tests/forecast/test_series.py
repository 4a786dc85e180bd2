"""Tables of series: the wide and the long layout read to the same panel; bad tables are one clear line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trendgen.errors import TrendgenError
from trendgen.forecast.series import read_series


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_wide_and_long_tables_read_to_the_same_series(tmp_path):
    wide = write(
        tmp_path / "wide.csv", "week,red,blue\n2024-01-15,0.1,0.3\n2024-01-01,0.2,0.4\n2024-01-08,0,0.5\n"
    )
    rows = [("2024-01-01", "red", 0.2), ("2024-01-08", "red", 0), ("2024-01-15", "red", 0.1)]
    rows += [("2024-01-15", "blue", 0.3), ("2024-01-01", "blue", 0.4), ("2024-01-08", "blue", 0.5)]
    long = write(tmp_path / "long.csv", "series,date,value\n" + "".join(f"{s},{d},{v}\n" for d, s, v in rows))
    a, b = read_series(wide), read_series(long)
    assert a.unit == b.unit == "week" and a.season_length == 52
    assert a.dates.tolist() == b.dates.tolist() and str(a.dates[0]) == "2024-01-01"
    order = [b.names.index(name) for name in a.names]
    assert np.array_equal(a.values, b.values[order])
    assert a.values[0].tolist() == [0.2, 0.0, 0.1]
    assert [str(d) for d in a.future_dates(2)] == ["2024-01-22", "2024-01-29"]


def test_parquet_and_monthly_dates(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(
        {"date": ["2024-01-01", "2024-02-01", "2024-03-01"], "series": "x", "value": [1, 2, 3]}
    )
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    table = read_series(path)
    assert table.unit == "month" and table.season_length == 12
    assert [str(d) for d in table.future_dates(2)] == ["2024-04-01", "2024-05-01"]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("name,a\nred,1\nblue,2\n", "column 'name' is not dates"),
        ("date,a\n2024-01-01,1\n2024-01-01,2\n", "date 2024-01-01 appears more than once"),
        (
            "date,a,b\n2024-01-01,1,2\n2024-01-08,,3\n2024-01-15,1,4\n",
            "series 'a' has missing values on 2024-01-08",
        ),
        ("date,a,b\n2024-01-01,1,2\n2024-01-08,1,-3\n", "series 'b' has negative values on 2024-01-08"),
        ("date,a\n2024-01-01,1\n2024-01-08,1\n2024-01-29,1\n", "not a day, week, calendar month"),
        ("date,a\n2024-01-01,1\n2024-01-08,high\n", "series 'a' has values that are not numbers"),
        ("series,date,value\nx,2024-01-01,1\nx,2024-01-01,2\n", "series 'x' has date 2024-01-01 twice"),
    ],
)
def test_a_bad_table_is_one_line_naming_the_file_and_the_rows(tmp_path, text, said):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(TrendgenError, match=said) as err:
        read_series(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_month_end_tables_forecast_month_ends_and_four_weekly_ones_are_refused(tmp_path):
    ends = write(tmp_path / "ends.csv", "date,a\n2023-11-30,1\n2023-12-31,2\n2024-01-31,3\n")
    assert [str(d) for d in read_series(ends).future_dates(2)] == ["2024-02-29", "2024-03-31"]
    four_weekly = write(
        tmp_path / "fw.csv", "date,a\n2023-01-02,1\n2023-01-30,2\n2023-02-27,3\n2023-03-27,4\n"
    )
    with pytest.raises(TrendgenError, match="calendar month"):
        read_series(four_weekly)
    numbers = write(tmp_path / "n.csv", "a,b\n1,2\n2,3\n")
    with pytest.raises(TrendgenError, match="column 'a' is not dates"):
        read_series(numbers)
