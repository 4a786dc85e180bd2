"""Naming the trend: the caption most photos carry, not the caption nearest a merged cluster's centroid."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.design import compose_design

from trendgen.design import cluster
from trendgen.design.describe import describe_target
from trendgen.design.report import naming_table

DIM = 10
AXES = {"t-shirt": 0, "shirt": 1, "pullover": 2, "dress": 6, "red": 7, "blue": 8}


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def axis(*names: str, **extra: float) -> np.ndarray:
    """A direction: one unit along each named axis (a caption word), plus `extra` {axis index: weight}."""
    v = np.zeros(DIM)
    for name in names:
        v[AXES[name]] = 1.0
    for i, w in extra.items():
        v[int(i.removeprefix("e"))] += w
    return v


def embed(texts: list[str]) -> np.ndarray:
    """A text's embedding: the sum of its words' axes ("a red shirt" = red + shirt), normalised."""
    return unit(np.stack([axis(*[w for w in t.split() if w in AXES]) for t in texts]))


def photos_near(direction: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return unit(direction + 0.03 * rng.standard_normal((n, DIM)))


@pytest.fixture(scope="module")
def cfg():
    return compose_design(["trend.clusters=3", "trend.bootstrap=200"])


def test_a_merged_cluster_is_named_by_what_most_photos_show(tmp_path, cfg):
    # 26 t-shirts and 20 pullovers lie close (one kind of top each, along a shared axis 5): k-means at k=3
    # merges them into the largest cluster, whose centroid is nearest "t-shirt". The 40 shirts come in two
    # far-apart cuts (axes 3 and 4), two smaller clusters; but shirts are what most photos show.
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            photos_near(axis("t-shirt") * 0.5 + axis(e5=1), 26, rng),
            photos_near(axis("pullover") * 0.5 + axis(e5=1), 20, rng),
            photos_near(axis("shirt") * 0.5 + axis(e3=1), 20, rng),
            photos_near(axis("shirt") * 0.5 + axis(e4=1), 20, rng),
        ]
    )
    index = {
        "paths": [f"{i}.png" for i in range(len(x))],
        "sets": ["current"] * len(x),
        "periods": [{"label": "current", "position": 0}],
    }
    cluster.run(cfg.trend, x, index, tmp_path)
    clusters = cluster.load(tmp_path)
    assert [c["size"] for c in clusters.record["clusters"]] == [46, 20, 20]  # the tops merged, largest
    period = np.zeros(len(x), dtype=np.int64)
    bank = {"garment": ["t-shirt", "shirt", "pullover"]}
    record = describe_target(
        bank,
        embed,
        clusters.target_centroid,
        cfg.captions,
        cfg.trend,
        (x, period, [0], clusters.labels),
        clusters.record["target_by"],
    )
    assert record["cluster_view"]["look"]["text"] == "a t-shirt"  # the old rule: the centroid's nearest
    assert record["look"]["text"] == "a shirt" and record["overall"][0]["text"] == "a shirt"
    assert record["naming"]["named"] == {"garment": {"text": "shirt", "by": "photos"}}
    assert record["photo_view"]["garment"] == {
        "text": "shirt",
        "photos": 40,
        "of": 86,
        "share": pytest.approx(40 / 86, abs=1e-6),
        "among": {},
    }
    garments = record["facets"]["garment"]
    assert [g["text"] for g in garments] == ["shirt", "t-shirt", "pullover"]  # named first, then by score
    assert garments[0]["photos"] == pytest.approx(40 / 86, abs=1e-6)
    page = naming_table(record)  # the report's view of both
    assert "shirt" in page and "40 of 86 photos" in page and "a t-shirt" in page


def test_each_facet_is_counted_among_the_photos_carrying_the_values_named_before_it(cfg):
    # 40 shirts (30 blue, 10 red), 35 red dresses. Counted on their own the facets would say "a red shirt",
    # a look 10 photos show; counted in turn, the colour of the shirts is blue.
    rng = np.random.default_rng(1)
    looks = [("blue", "shirt", 30), ("red", "shirt", 10), ("red", "dress", 35)]
    x = np.concatenate([photos_near(axis(c, g), n, rng) for c, g, n in looks])
    bank = {"garment": ["dress", "shirt"], "colour": ["red", "blue"]}
    labels = np.zeros(len(x), dtype=np.int64)
    photos = (x, np.zeros(len(x), dtype=np.int64), [0], labels)
    record = describe_target(bank, embed, x.mean(axis=0), cfg.captions, cfg.trend, photos)
    assert record["look"]["text"] == "a blue shirt"
    assert record["photo_view"]["colour"]["among"] == {"garment": "shirt"}
    assert record["photo_view"]["colour"]["photos"] == 30 and record["photo_view"]["colour"]["of"] == 40
    assert {e["text"]: e["photos"] for e in record["facets"]["colour"]} == pytest.approx(
        {"red": 45 / 75, "blue": 30 / 75}, abs=1e-6
    )


def test_an_emerging_target_is_named_by_the_caption_that_grows(cfg):
    # Three periods of 60 photos: shirts stay the most photos, dresses grow from 5 to 25.
    rng = np.random.default_rng(2)
    counts = [(55, 5), (45, 15), (35, 25)]
    x = np.concatenate(
        [photos_near(axis(g), n, rng) for s, d in counts for g, n in (("shirt", s), ("dress", d))]
    )
    period = np.repeat(np.arange(3), [s + d for s, d in counts])
    bank = {"garment": ["shirt", "dress"]}
    photos = (x, period, [0, 1, 2], np.zeros(len(x), dtype=np.int64))
    dresses = x[np.argmax(x @ embed(["dress", "shirt"]).T, axis=1) == 0]
    emerging = describe_target(bank, embed, dresses.mean(0), cfg.captions, cfg.trend, photos, "emerging")
    assert emerging["naming"]["named"]["garment"] == {"text": "dress", "by": "growth"}
    assert emerging["photo_view"]["garment"]["growth"]["label"] == "emerging"
    dominant = describe_target(bank, embed, dresses.mean(0), cfg.captions, cfg.trend, photos, "dominant")
    assert dominant["look"]["text"] == "a shirt"  # most photos of the last period, whatever the centroid
    assert dominant["cluster_view"]["look"]["text"] == "a dress"
