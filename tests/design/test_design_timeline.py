"""trendgen-design over periods: a dated CSV index of photos in, the timeline and its charts out."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from helpers.design import base_overrides, compose_design, make_tiny_clip, write_looks

from trendgen.recipes.design import run_design


class ImageAlts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.alts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.alts.append(dict(attrs)["alt"])


@pytest.fixture(scope="module")
def timeline_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("timeline")
    model = make_tiny_clip(tmp / "model")
    rows = ["path,date"]
    for month, share in ((1, 0.2), (2, 0.5), (3, 0.8)):  # the planted look rises month by month
        looks = write_looks(tmp / f"m{month}", n=10, seed=month, share=share)
        rows += [f"{p.relative_to(tmp)},2025-{month:02d}-15" for p in sorted(looks.glob("*.png"))]
    rows.append("m3/missing.png,2025-03-20")  # named in the index, never written: skipped, recorded
    (tmp / "photos.csv").write_text("\n".join(rows) + "\n")
    overrides = [o for o in base_overrides(tmp, model, tmp / "m1") if not o.startswith("trend.images=")]
    overrides += [f"trend.periods={tmp / 'photos.csv'}", "trend.bootstrap=500", "generator=none"]
    trend = run_design(compose_design(overrides))
    return trend, tmp / "out"


def test_trend_json_holds_the_timeline(timeline_run):
    trend, out = timeline_run
    assert json.loads((out / "trend.json").read_text()) == trend
    assert [p["label"] for p in trend["periods"]] == ["2025-01", "2025-02", "2025-03"]
    assert [p["images"] for p in trend["periods"]] == [10, 10, 10]
    assert [p["used"] for p in trend["images"]["periods"]] == [10, 10, 10]
    assert trend["images"]["skipped"][0]["path"].endswith("missing.png")
    for c in trend["clusters"]:
        assert len(c["shares"]) == len(c["intervals"]) == 3
        assert all(
            low <= share <= high for share, (low, high) in zip(c["shares"], c["intervals"], strict=True)
        )
        assert c["growth"]["label"] in ("emerging", "fading", "steady")
        assert c["forecast"]["interval"][0] <= c["forecast"]["share"] <= c["forecast"]["interval"][1]
    for period in range(3):
        assert sum(c["shares"][period] for c in trend["clusters"]) == pytest.approx(1.0, abs=1e-5)
    attributes = trend["timeline"]["attributes"]
    assert {"garment", "colour", "pattern"} <= set(attributes)
    colour = attributes["colour"]
    assert len(colour["shares"]) == 3 and len(colour["shares"][0]) == len(colour["captions"])
    assert all(sum(row) == pytest.approx(1.0, abs=1e-5) for row in colour["shares"])
    assert len(colour["growth"]) == len(colour["captions"])
    # every growth test of the run (clusters x facets x captions) is one Benjamini-Hochberg family
    tests = trend["growth_tests"]
    assert tests["count"] == len(trend["clusters"]) + sum(len(a["captions"]) for a in attributes.values())
    entries = [c["growth"] for c in trend["clusters"]] + [g for a in attributes.values() for g in a["growth"]]
    assert all(g["q"] >= g["p"] - 1e-12 for g in entries)
    assert tests["emerging"] == sum(g["label"] == "emerging" for g in entries)


def test_the_report_draws_the_timeline(timeline_run):
    _, out = timeline_run
    parser = ImageAlts()
    parser.feed((out / "report.html").read_text())
    assert "cluster shares over time" in parser.alts and "attributes over time" in parser.alts


def test_labels_with_dollar_signs_are_drawn_as_text_and_trend_json_comes_first(tmp_path, monkeypatch):
    """A `$` pair in a period label (or a caption) is not mathtext: the report is written. And trend.json is
    written before the report, so a report that fails still leaves the record."""
    model = make_tiny_clip(tmp_path / "model")
    periods = [
        {"label": f"AW$x_{i}$", "images": str(write_looks(tmp_path / f"p{i}", n=8, seed=i))} for i in range(2)
    ]
    listed = ",".join("{label: '" + p["label"] + "', images: " + p["images"] + "}" for p in periods)
    overrides = [
        o for o in base_overrides(tmp_path, model, tmp_path / "p0") if not o.startswith("trend.images=")
    ]
    overrides += [f"trend.periods=[{listed}]", "trend.bootstrap=100", "generator=none"]
    trend = run_design(compose_design(overrides))
    assert [p["label"] for p in trend["periods"]] == ["AW$x_0$", "AW$x_1$"]
    assert (tmp_path / "out" / "report.html").stat().st_size > 0

    from trendgen.design import report

    def broken(*args, **kwargs):
        raise RuntimeError("the report broke")

    monkeypatch.setattr(report, "render", broken)
    with pytest.raises(RuntimeError):
        run_design(compose_design([*overrides, "paths.output_dir=" + str(tmp_path / "second")]))
    assert json.loads((tmp_path / "second" / "trend.json").read_text())["periods"][1]["label"] == "AW$x_1$"
