"""Reading a design run's trend.json: clusters' shares per period, growth, the trend table, the headline,
the attribute series.

These readers take what a trend.json holds, today's and an earlier run's: growth is a dict ({label, slope,
interval}) or, in runs before timelines, a number (share now minus share then); a cluster's shares over time
are `shares` (a list beside trend.json's `periods`, with `intervals`; or a dict period -> share or ->
{share, interval}), else `share_then`/`share_now`, else `share`. Used by `trendgen.tracking.wandb_runs` (W&B)
and `trendgen.tracking.compare` (tables of design runs).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

TOP_CAPTIONS = 3  # captions named per cluster in the trend table


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def interval(node: Any) -> tuple[float | None, float | None]:
    """(low, high) from `interval` / `ci` ([lo, hi] or {low, high}) or `low`/`high` keys; (None, None)."""
    if not isinstance(node, dict):
        return None, None
    found = next((node[k] for k in ("interval", "ci", "share_interval") if node.get(k) is not None), None)
    if isinstance(found, list | tuple) and len(found) == 2:
        return number(found[0]), number(found[1])
    if isinstance(found, dict):
        node = found
    low = next((node[k] for k in ("low", "lower", "lo") if k in node), None)
    high = next((node[k] for k in ("high", "upper", "hi") if k in node), None)
    return number(low), number(high)


def growth_of(cluster: dict[str, Any]) -> dict[str, Any]:
    """A cluster's growth as {label, slope, low, high}: `growth` is a dict (label, slope, interval) or, from
    the two-set mode, a number (share now minus share then); empty when the cluster has none."""
    growth = cluster.get("growth")
    if isinstance(growth, dict):
        low, high = interval(growth)
        slope = number(growth.get("slope", growth.get("value")))
        return {"label": growth.get("label"), "slope": slope, "low": low, "high": high}
    if number(growth) is not None:
        return {"label": None, "slope": number(growth), "low": None, "high": None}
    return {}


def _period_labels(trend: dict[str, Any], cluster: dict[str, Any]) -> list[str]:
    periods = cluster.get("periods") or trend.get("periods") or (trend.get("timeline") or {}).get("periods")
    if not isinstance(periods, list):
        return []
    return [str(p.get("label", i)) if isinstance(p, dict) else str(p) for i, p in enumerate(periods)]


def share_series(trend: dict[str, Any], cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """A cluster's share per period, [{period, share, low, high}] in time order.

    Reads `shares` (a list beside trend.json's `periods`, with the per-period `intervals` [low, high]; or
    a dict label -> share or -> {share, interval}), else an older run's `share_then` / `share_now`, else
    `share`.
    """
    shares = cluster.get("shares")
    rows: list[tuple[str, Any]] = []
    if isinstance(shares, dict):
        rows = [(str(label), value) for label, value in shares.items()]
    elif isinstance(shares, list):
        labels = _period_labels(trend, cluster)
        intervals = cluster.get("intervals") if isinstance(cluster.get("intervals"), list) else []
        for i, value in enumerate(shares):
            label = value.get("period", value.get("label")) if isinstance(value, dict) else None
            label = label if label is not None else labels[i] if i < len(labels) else i
            if not isinstance(value, dict) and i < len(intervals):
                value = {"share": value, "interval": intervals[i]}
            rows.append((str(label), value))
    elif "share_then" in cluster:
        rows = [("baseline", cluster["share_then"]), ("current", cluster.get("share_now", cluster["share"]))]
    else:
        rows = [("current", {"share": cluster.get("share"), "interval": cluster.get("interval")})]
    series = []
    for label, value in rows:
        share = number(value.get("share", value.get("value")) if isinstance(value, dict) else value)
        low, high = interval(value)
        series.append({"period": label, "share": share, "low": low, "high": high})
    return series


def cluster_captions(trend: dict[str, Any], cluster: dict[str, Any]) -> list[str]:
    """The top captions of a cluster: its own when it carries them, the run's for the target cluster."""
    own = cluster.get("captions") or cluster.get("top_captions")
    if isinstance(own, list) and own:
        return [str(c.get("text", c)) if isinstance(c, dict) else str(c) for c in own[:TOP_CAPTIONS]]
    if cluster.get("id") == trend.get("target_cluster"):
        return [c["text"] for c in trend.get("captions", [])[:TOP_CAPTIONS]]
    return []


TREND_COLUMNS = ["cluster", "target", "size", "share", "share_low", "share_high", "growth_label"]
TREND_COLUMNS += ["growth_slope", "growth_low", "growth_high", "forecast", "forecast_low", "forecast_high"]
TREND_COLUMNS += ["top_captions", "exemplar"]


def trend_rows(trend: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per cluster of trend.json: the values of the trend table (exemplar: an image path)."""
    rows = []
    for cluster in trend.get("clusters", []):
        share_low, share_high = interval(cluster)
        series = share_series(trend, cluster)
        if share_low is None and series:
            share_low, share_high = series[-1]["low"], series[-1]["high"]
        growth = growth_of(cluster)
        forecast = cluster.get("forecast") if isinstance(cluster.get("forecast"), dict) else {}
        forecast_low, forecast_high = interval(forecast)
        exemplars = [p for p in cluster.get("exemplars", []) if Path(p).is_file()]
        rows.append(
            {
                "cluster": cluster.get("id"),
                "target": cluster.get("id") == trend.get("target_cluster"),
                "size": cluster.get("size"),
                "share": number(cluster.get("share")),
                "share_low": share_low,
                "share_high": share_high,
                "growth_label": growth.get("label"),
                "growth_slope": growth.get("slope"),
                "growth_low": growth.get("low"),
                "growth_high": growth.get("high"),
                "forecast": number(forecast.get("share")),
                "forecast_low": forecast_low,
                "forecast_high": forecast_high,
                "top_captions": " | ".join(cluster_captions(trend, cluster)),
                "exemplar": exemplars[0] if exemplars else None,
            }
        )
    return rows


def target_cluster(trend: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in trend.get("clusters", []) if c.get("id") == trend.get("target_cluster")), {})


def design_summary(trend: dict[str, Any]) -> dict[str, Any]:
    """The design run's headline values (W&B summary; `trendgen-compare` reads the same)."""
    target = target_cluster(trend)
    growth = growth_of(target)
    designs = trend.get("designs") or []
    captions = trend.get("captions") or []
    summary: dict[str, Any] = {
        "k": trend.get("k"),
        "k_chosen_by": trend.get("k_chosen_by"),
        "target_cluster": trend.get("target_cluster"),
        "dominant_cluster": trend.get("dominant_cluster"),
        "target_share": number(target.get("share")),
        "target_growth_label": growth.get("label"),
        "target_growth_slope": growth.get("slope"),
        "target_reason": trend.get("target_reason"),
        "top_caption": captions[0]["text"] if captions else None,
        "best_design_score": max((d["score"] for d in designs), default=None),
        "images_used": (trend.get("images") or {}).get("used"),
    }
    return {k: v for k, v in summary.items() if v is not None}


ATTRIBUTE_COLUMNS = ["facet", "caption", "share", "share_low", "share_high", "growth_label", "growth_slope"]
ATTRIBUTE_COLUMNS += ["growth_low", "growth_high"]


def attribute_rows(trend: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The attribute series of a timeline (`timeline.attributes`: per facet, each caption's share of the
    photos per period): one row per caption (its last share and growth) and one per caption and period."""
    attributes = (trend.get("timeline") or {}).get("attributes") or {}
    labels = _period_labels(trend, {})
    summary, per_period = [], []
    for facet, series in attributes.items():
        captions = series.get("captions") or []
        shares, intervals = series.get("shares") or [], series.get("intervals") or []
        growth = series.get("growth") or []
        for c, caption in enumerate(captions):
            rows = share_series(
                trend,
                {
                    "shares": [row[c] for row in shares],
                    "intervals": [row[c] for row in intervals],
                    "periods": labels,
                },
            )
            for row in rows:
                per_period.append({"facet": facet, "caption": caption, **row})
            last = rows[-1] if rows else {"share": None, "low": None, "high": None}
            g = growth_of({"growth": growth[c]}) if c < len(growth) else {}
            summary.append(
                {
                    "facet": facet,
                    "caption": caption,
                    "share": last["share"],
                    "share_low": last["low"],
                    "share_high": last["high"],
                    "growth_label": g.get("label"),
                    "growth_slope": g.get("slope"),
                    "growth_low": g.get("low"),
                    "growth_high": g.get("high"),
                }
            )
    return summary, per_period
