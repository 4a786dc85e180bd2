"""Report stage: one self-contained `report.html` (every picture a PNG data URI) a person can open anywhere.

It shows the cluster shares (a bar chart for one period; over several, a stacked area with each cluster's
exemplar strip, and each facet's attribute shares as lines with intervals: `trendgen.design.report_charts`), a
2-D PCA projection of the embeddings coloured by cluster, an exemplar montage per cluster, how the trend was
named (each facet's named value beside the photo view and the cluster view), the ranked captions with their
scores and the share of photos carrying each, the prompt and where it came from, and the designs with their
scores.
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from trendgen.design.results import ClusterResult, EmbedResult
from trendgen.design.store import RecordStage
from trendgen.files import write_text
from trendgen.html_report import figure_png, page, png_data_uri

REPORT = "report.html"  # written at the top of the output dir
_MAX_POINTS = 5000
_THUMB = 96


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, loaded when a chart is drawn (not by an embed-only run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def shares_chart(clusters: list[dict[str, Any]], target: int) -> bytes:
    """Bars of each cluster's share (one period); the target cluster highlighted."""
    plt = _pyplot()
    ids = [c["id"] for c in clusters]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(ids) + 2), 3.2))
    x = np.arange(len(ids))
    ax.bar(
        x, [c["share"] for c in clusters], 0.7, color=["#e8a33d" if i == target else "#4c72b0" for i in ids]
    )
    ax.set_xticks(x, [f"#{i}" for i in ids])
    ax.set_ylabel("share of images")
    ax.set_title(f"Cluster shares (target: #{target})")
    ax.spines[["top", "right"]].set_visible(False)
    return figure_png(fig)


def projection_chart(embeddings: np.ndarray, labels: np.ndarray, sets: list[str], target: int) -> bytes:
    """A 2-D PCA projection of the embeddings, coloured by cluster; earlier periods' photos drawn hollow."""
    plt = _pyplot()
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    rows = np.arange(len(embeddings))
    if len(rows) > _MAX_POINTS:
        rows = np.sort(rng.choice(rows, _MAX_POINTS, replace=False))
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    if len(rows) >= 2 and embeddings.shape[1] >= 2:
        points = PCA(n_components=2, random_state=0).fit_transform(embeddings[rows])
    else:
        points = np.zeros((len(rows), 2))
    cmap = plt.get_cmap("tab10")
    is_current = np.array([sets[i] == sets[-1] for i in rows])
    for c in np.unique(labels[rows][labels[rows] >= 0]):
        mask = labels[rows] == c
        color = cmap(int(c) % 10)
        label = f"#{c}" + (" (target)" if c == target else "")
        ax.scatter(*points[mask & is_current].T, s=10, color=color, label=label)
        if (mask & ~is_current).any():
            ax.scatter(*points[mask & ~is_current].T, s=10, facecolors="none", edgecolors=color)
    ax.set_title(
        "Embeddings (PCA), coloured by cluster"
        + ("; hollow: earlier periods" if not is_current.all() else "")
    )
    ax.legend(frameon=False, fontsize=8, markerscale=1.5, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    return figure_png(fig)


def montage(paths: list[str], thumb: int = _THUMB) -> bytes:
    """The exemplars side by side, each fitted into a `thumb` square; unreadable files left grey."""
    from trendgen.data.images import load_rgb

    sheet = Image.new("RGB", (max(1, len(paths)) * (thumb + 4) + 4, thumb + 8), (255, 255, 255))
    for i, path in enumerate(paths):
        image, _reason = load_rgb(path)
        tile = Image.new("RGB", (thumb, thumb), (220, 220, 220))
        if image is not None:
            image = ImageOps.contain(image, (thumb, thumb))  # small images are scaled up too
            tile.paste(image, ((thumb - image.width) // 2, (thumb - image.height) // 2))
        sheet.paste(tile, (4 + i * (thumb + 4), 4))
    return image_png(sheet)


def _img(png: bytes, alt: str) -> str:
    return f'<img src="{png_data_uri(png)}" alt="{html.escape(alt)}">'


def _captions_table(rows: list[dict[str, Any]]) -> str:
    photos = any("photos" in r for r in rows)  # the share of the last period's photos carrying each caption
    body = "".join(
        f"<tr><td>{i + 1}</td><td>{html.escape(r['text'])}</td><td>{html.escape(r['facet'])}</td>"
        f"<td>{r['score']:.3f}</td>"
        + (f"<td>{r['photos']:.1%}</td>" if "photos" in r else "<td></td>" * photos)
        + "</tr>"
        for i, r in enumerate(rows)
    )
    head = "<th>#</th><th>caption</th><th>facet</th><th>score</th>" + "<th>photos</th>" * photos
    return f"<table><tr>{head}</tr>{body}</table>"


def naming_table(trend: dict[str, Any]) -> str:
    """How each facet's value was named: the named value, the photo view and the cluster view side by side."""
    naming, esc = trend.get("naming") or {}, html.escape
    if not naming.get("named"):
        return ""
    photo_view = trend.get("photo_view") or {}
    cluster_view = (trend.get("cluster_view") or {}).get("facets", {})
    rows = []
    for facet, named in naming["named"].items():
        seen = photo_view.get(facet)
        if seen and "photos" in seen:
            seen_text = f"{esc(seen['text'])} ({seen['photos']} of {seen['of']} photos)"
        elif seen:
            seen_text = f"{esc(seen['text'])} (grows {seen['growth']['slope']:+.1%} a period)"
        else:
            seen_text = "<span class='muted'>none</span>"
        near = cluster_view.get(facet)
        near_text = f"{esc(near['text'])} ({near['score']:.3f})" if near else ""
        rows.append(
            f"<tr><td>{esc(facet)}</td><td><b>{esc(named['text'])}</b> <span class='muted'>by "
            f"{esc(named['by'])}</span></td><td>{seen_text}</td><td>{near_text}</td></tr>"
        )
    look = (trend.get("cluster_view") or {}).get("look")
    said = (
        f"<p>the cluster's centroid alone says: {esc(look['text'])} ({look['score']:.3f})</p>" if look else ""
    )
    return (
        f"<p class='muted'>named by the rule {esc(naming['rule'])}</p>{said}<table><tr><th>facet</th>"
        f"<th>named</th><th>photo view</th><th>cluster view (score)</th></tr>{''.join(rows)}</table>"
    )


def _growth_tests(trend: dict[str, Any]) -> str:
    tests = trend.get("growth_tests")
    if not tests:
        return ""
    return (
        f"<p class='muted'>{tests['count']} growth tests (clusters and every facet's captions), labels at a "
        f"false-discovery rate of {tests['fdr']:g} ({html.escape(str(tests['method']))}): "
        f"{tests['emerging']} emerging, {tests['fading']} fading.</p>"
    )


def render(
    trend: dict[str, Any], embeddings: np.ndarray | None, labels: np.ndarray | None, sets: list[str]
) -> str:
    """The report's HTML from the trend record (and the embeddings for the projection). Every string in a
    chart is the user's (period labels, captions): drawn as text, never parsed as mathtext."""
    with _pyplot().rc_context({"text.parse_math": False}):
        return _render(trend, embeddings, labels, sets)


def _render(
    trend: dict[str, Any], embeddings: np.ndarray | None, labels: np.ndarray | None, sets: list[str]
) -> str:
    esc = html.escape
    clusters = trend.get("clusters") or []
    target = trend.get("target_cluster")
    parts = [
        f"<h1>trendgen design report</h1><p class='muted'>config {esc(str(trend.get('config_hash')))}</p>"
    ]
    images = trend.get("images") or {}
    parts.append(
        f"<p>{images.get('used', 0)} of {images.get('total', 0)} images used; "
        f"{len(images.get('skipped', []))} skipped.</p>"
    )
    if images.get("skipped"):
        rows = "".join(
            f"<tr><td>{esc(s['path'])}</td><td>{esc(s['reason'])}</td></tr>" for s in images["skipped"][:50]
        )
        parts.append(f"<details><summary>skipped files</summary><table>{rows}</table></details>")
    if clusters:
        parts.append("<h2>Clusters</h2>")
        periods = trend.get("periods") or []
        if len(periods) > 1:
            from trendgen.design.report_charts import shares_area_chart

            chart = figure_png(shares_area_chart(periods, clusters, target))
            parts.append(_img(chart, "cluster shares over time"))
            parts.append(f"<p>{esc(str(trend.get('target_reason', '')))}</p>")
            parts.append(_growth_tests(trend))
        else:
            parts.append(_img(shares_chart(clusters, target), "cluster shares"))
        if embeddings is not None and labels is not None and len(embeddings):
            parts.append(_img(projection_chart(embeddings, labels, sets, target), "embedding projection"))
        for c in clusters:
            g = c.get("growth") or {}
            then = f", {g['label']} ({g['slope']:+.1%} a period)" if g.get("slope") is not None else ""
            mark = " class='target'" if c["id"] == target else ""
            parts.append(
                f"<h3{mark}>Cluster #{c['id']}{' (target)' if c['id'] == target else ''}: "
                f"{c['size']} images, {c['share']:.1%}{then}</h3>"
            )
            parts.append(_img(montage(c["exemplars"]), f"exemplars of cluster {c['id']}"))
    if trend.get("captions"):
        parts.append("<h2>Captions closest to the trend</h2>")
        if trend.get("look"):
            look = trend["look"]
            parts.append(f"<p class='prompt'>look: {esc(look['text'])} ({look['score']:.3f})</p>")
        parts.append(naming_table(trend))
        parts.append(_captions_table(trend["captions"]))
        for facet, rows in (trend.get("facets") or {}).items():
            parts.append(f"<h3>{esc(facet)}</h3>" + _captions_table(rows))
    if trend.get("backtest"):  # a timeline long enough to backtest the shares' forecasts
        from trendgen.forecast.report import backtest_table

        level = 100 * float((trend.get("timeline") or {}).get("confidence") or 0.95)
        parts += ["<h2>Forecast backtest (cluster shares)</h2>", backtest_table(trend["backtest"], level)]
    attributes = (trend.get("timeline") or {}).get("attributes")
    if attributes and len(trend.get("periods") or []) > 1:
        from trendgen.design.report_charts import attribute_chart

        parts.append("<h2>Attributes over time</h2>")
        parts.append(_img(figure_png(attribute_chart(trend["periods"], attributes)), "attributes over time"))
    prompt = trend.get("prompt")
    if prompt:
        reason = f" (fallback: {esc(prompt['fallback_reason'])})" if prompt.get("fallback_reason") else ""
        parts.append(f"<h2>Prompt</h2><p>source: {esc(prompt['source'])}{reason}</p>")
        parts.append(f"<p class='prompt'>{esc(prompt['text'])}</p>")
        if prompt.get("generator_text") and prompt["generator_text"] != prompt["text"]:
            said = esc(prompt["generator_text"])
            parts.append(f"<p>in the generator's words: <span class='prompt'>{said}</span></p>")
    designs = trend.get("designs") or []
    if designs:
        figures = []
        for rank, d in enumerate(designs, 1):
            png = Path(d["path"]).read_bytes()
            figures.append(
                f"<figure>{_img(png, f'design {rank}')}<figcaption>#{rank} seed {d['seed']}, "
                f"score {d['score']:.3f}</figcaption></figure>"
            )
        target_cluster = next((c for c in clusters if c["id"] == target), None)
        if target_cluster is not None:  # the designs beside the trend they should carry
            figures.append(
                f"<figure>{_img(montage(target_cluster['exemplars']), 'trend exemplars')}"
                f"<figcaption>the trend: exemplars of cluster #{target}</figcaption></figure>"
            )
        parts.append("<h2>Designs, best first</h2><div class='designs'>" + "".join(figures) + "</div>")
    seconds = trend.get("stage_seconds") or {}
    if seconds:
        timing = ", ".join(f"{esc(k)} {v:.1f} s" for k, v in seconds.items())
        parts.append(f"<p class='muted'>stage times: {timing}</p>")
    return page("trendgen design report", "\n".join(parts))


def run(
    trend: dict[str, Any],
    embeddings: np.ndarray | None,
    labels: np.ndarray | None,
    sets: list[str],
    stage_dir: Path,
) -> list[str]:
    """Write `report.html` into `stage_dir`; returns the files written."""
    write_text(stage_dir / REPORT, render(trend, embeddings, labels, sets))
    return [REPORT]


def _run_stage(trend: dict[str, Any], results: Mapping[str, Any], folder: Path) -> list[str]:
    embedded: EmbedResult = results["embed"]
    clusters: ClusterResult = results["cluster"]
    return run(trend, embedded.embeddings, clusters.labels, embedded.index["sets"], folder)


STAGE = RecordStage("report", inputs=("embed", "cluster"), run=_run_stage)
