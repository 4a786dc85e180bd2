"""Naming the target trend: each facet's value from what the photos show, the cluster's view alongside.

Two views of a facet's value:

- the *cluster view*: the caption nearest the target cluster's centroid (the describe stage's ranking).
  k-means at the chosen k merges neighbours, so a centroid can sit nearer a neighbour of what most photos
  show: with 30% planted shirts, the largest cluster held 30 shirts and 22 t-shirts and read "a t-shirt".
- the *photo view*: each photo's best caption in the facet (the votes the attribute timelines count, scored as
  the trend's look with that one value changed), counted over the photos.

The named value (the rule, `naming.rule` in trend.json):

- dominant target: facet by facet in bank order, the caption carried by the most photos of the last period,
  counted among the photos that carry every value named before it (the first facet: all of them), so the
  named values describe one group of photos, never a mix no photo shows. A tie goes to the cluster view's
  value when it is among the tied, else to bank order. All photos are counted, not only the target
  cluster's: below a quarter of the set a planted class is often not the largest cluster at all (measured
  in docs/design.md: at 20%, all photos named it in 40 of 40 sets, the cluster's own majority in 31, its
  centroid in 28).
- emerging target (a cluster grows significantly): each facet's caption whose photo share grows most
  significantly (its attribute timeline's growth, picked as the cluster stage picks the emerging cluster);
  a facet where none grows significantly keeps the cluster view's value.
- no photos to count: the cluster view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

RULES = {
    "dominant": (
        "dominant: each facet's caption carried by the most photos of the last period, in bank order, "
        "counted among the photos that carry the values named before it"
    ),
    "emerging": (
        "emerging: each facet's caption whose photo share grows fastest among those labelled emerging; "
        "the cluster view where none does"
    ),
    "cluster": "cluster view: the captions nearest the target cluster's centroid",
}


def photo_captions(
    entries: list[dict[str, Any]],
    bank: dict[str, list[str]],
    embed: Callable[[list[str]], np.ndarray],
    embeddings: np.ndarray,
    labels: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per facet, each photo's best caption (an index into the facet's captions), every caption scored as its
    `scored_as` text; -1 for a photo the cluster stage dropped (label -1)."""
    votes = {}
    for facet, captions in bank.items():
        scored_as = {e["text"]: e["scored_as"] for e in entries if e["facet"] == facet}
        best = np.argmax(embeddings @ embed([scored_as[c] for c in captions]).T, axis=1)
        best[labels < 0] = -1
        votes[facet] = best
    return votes


def photo_shares(
    bank: dict[str, list[str]], votes: dict[str, np.ndarray], in_last: np.ndarray
) -> dict[str, np.ndarray]:
    """Per facet, the share of the last period's photos carrying each caption (duplicates left out)."""
    shares = {}
    for facet, captions in bank.items():
        carried = votes[facet][in_last & (votes[facet] >= 0)]
        shares[facet] = np.bincount(carried, minlength=len(captions)) / max(1, len(carried))
    return shares


def _by_most_photos(
    bank: dict[str, list[str]],
    cluster_view: dict[str, str],
    votes: dict[str, np.ndarray],
    in_last: np.ndarray,
) -> dict[str, dict[str, Any] | None]:
    pool = in_last.copy()
    among: dict[str, str] = {}
    view: dict[str, dict[str, Any] | None] = {}
    for facet, captions in bank.items():
        carried = votes[facet]
        pool &= carried >= 0
        counts = np.bincount(carried[pool], minlength=len(captions))
        if not counts.sum():
            view[facet] = None
            continue
        tied = np.flatnonzero(counts == counts.max()).tolist()
        kept = captions.index(cluster_view[facet])
        pick = kept if kept in tied else tied[0]
        of = int(counts.sum())
        view[facet] = {
            "text": captions[pick],
            "photos": int(counts[pick]),
            "of": of,
            "share": round(float(counts[pick]) / of, 6),
            "among": dict(among),
        }
        among[facet] = captions[pick]
        pool &= carried == pick
    return view


def _by_growth(
    bank: dict[str, list[str]], attributes: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any] | None]:
    from trendgen.trends.timeline import most_significant_growth  # scipy.stats: loaded when naming runs

    view: dict[str, dict[str, Any] | None] = {}
    for facet, captions in bank.items():
        series = attributes.get(facet) or {}
        rising = most_significant_growth(series.get("growth") or [])
        view[facet] = None
        if rising is not None:
            view[facet] = {
                "text": captions[rising],
                "growth": series["growth"][rising],
                "share": series["shares"][-1][rising],
            }
    return view


def name_facets(
    bank: dict[str, list[str]],
    cluster_view: dict[str, str],
    target_by: str,
    votes: dict[str, np.ndarray] | None = None,
    in_last: np.ndarray | None = None,
    attributes: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Each facet's named value by the rule of `target_by` (dominant | emerging), with both views.

    `cluster_view`: facet -> the caption nearest the centroid; `votes`: facet -> each photo's best caption
    (an index into the facet's captions; -1 left out); `in_last`: which photos are of the last period;
    `attributes`: the describe stage's timelines (their `growth` and `shares`). Returns {`rule`, `target_by`,
    `named` {facet: {text, by: photos | growth | cluster}}, `photo_view` {facet: {text, ...} or None}}.
    """

    if votes is None or in_last is None:
        rule, view = "cluster", dict.fromkeys(bank)
    elif target_by == "emerging":
        rule, view = "emerging", _by_growth(bank, attributes or {})
    else:
        rule, view = "dominant", _by_most_photos(bank, cluster_view, votes, in_last)
    by = {"dominant": "photos", "emerging": "growth"}.get(rule, "cluster")
    named = {
        facet: {"text": v["text"], "by": by} if v else {"text": cluster_view[facet], "by": "cluster"}
        for facet, v in view.items()
    }
    return {"rule": RULES[rule], "target_by": target_by, "named": named, "photo_view": view}
