"""The report's pictures of change over periods: cluster shares as a stacked area with exemplar strips, and
each facet's attribute shares as lines with their intervals."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, ImageOps

_STRIP = 6  # exemplars per cluster in the strips
_LINES = 5  # captions per facet drawn: the largest ever, plus any emerging or fading one


def cluster_color(c: int) -> Any:
    return plt.get_cmap("tab10")(int(c) % 10)


def _thumb(path: str, size: int = 64) -> np.ndarray:
    from trendgen.data.images import load_rgb

    image, _reason = load_rgb(path)
    tile = Image.new("RGB", (size, size), (220, 220, 220))
    if image is not None:
        image = ImageOps.contain(image, (size, size))
        tile.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return np.asarray(tile)


def shares_area_chart(periods: list[dict[str, Any]], clusters: list[dict[str, Any]], target: int) -> Any:
    """Stacked cluster shares over the periods (the target hatched), each cluster's exemplars below."""
    labels = [p["label"] for p in periods]
    rows = len(clusters)
    fig = plt.figure(figsize=(max(6.0, 0.9 * len(labels) + 3), 3.6 + 0.75 * rows))
    grid = fig.add_gridspec(1 + rows, 1, height_ratios=[3.6] + [0.75] * rows, hspace=0.35)
    ax = fig.add_subplot(grid[0])
    x = np.arange(len(labels))
    shares = np.array([c["shares"] for c in clusters])
    stacks = ax.stackplot(x, shares, colors=[cluster_color(c["id"]) for c in clusters], alpha=0.85)
    for c, stack in zip(clusters, stacks, strict=True):
        stack.set_label(f"#{c['id']} {c['growth']['label']}" + (" (target)" if c["id"] == target else ""))
        if c["id"] == target:
            stack.set_hatch("//")
            stack.set_edgecolor("black")
    ax.set_xticks(x, labels)
    ax.set_xlim(0, max(1, len(labels) - 1))
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of photos")
    ax.set_title("Cluster shares over time")
    ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    for row, c in enumerate(clusters, start=1):
        strip = fig.add_subplot(grid[row])
        thumbs = [_thumb(p) for p in c["exemplars"][:_STRIP]] or [np.full((64, 64, 3), 255, np.uint8)]
        strip.imshow(np.concatenate(thumbs, axis=1))
        strip.set_xticks([])
        strip.set_yticks([])
        for spine in strip.spines.values():
            spine.set_edgecolor(cluster_color(c["id"]))
            spine.set_linewidth(3)
        strip.set_ylabel(f"#{c['id']}", rotation=0, labelpad=14, va="center")
    return fig


def _drawn(series: dict[str, Any]) -> list[int]:
    """The captions worth a line: the largest shares ever, plus every one that grows or fades."""
    shares = np.array(series["shares"])  # [P, C]
    largest = list(np.argsort(-shares.max(axis=0), kind="stable")[:_LINES])
    moving = [c for c, g in enumerate(series["growth"]) if g["label"] != "steady"]
    return list(dict.fromkeys([*moving, *largest]))


def attribute_chart(periods: list[dict[str, Any]], attributes: dict[str, dict[str, Any]]) -> Any:
    """One panel per facet: each drawn caption's share over the periods with its interval band."""
    labels = [p["label"] for p in periods]
    facets = list(attributes)
    cols = 1 if len(facets) < 3 else 2
    rows = -(-len(facets) // cols)
    width = max(6.0, 0.9 * len(labels) + 3)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(facets) :]:
        ax.set_visible(False)
    x = np.arange(len(labels))
    for ax, facet in zip(axes.flat, facets, strict=False):
        series = attributes[facet]
        shares, intervals = np.array(series["shares"]), np.array(series["intervals"])  # [P, C], [P, C, 2]
        for i, c in enumerate(_drawn(series)):
            color = plt.get_cmap("tab10")(i % 10)
            growth = series["growth"][c]["label"]
            ax.plot(x, shares[:, c], marker="o", color=color, label=f"{series['captions'][c]} ({growth})")
            ax.fill_between(x, intervals[:, c, 0], intervals[:, c, 1], color=color, alpha=0.15)
        ax.set_xticks(x, labels)
        ax.set_ylim(0, None)
        ax.set_ylabel("share of photos")
        ax.set_title(f"{facet} over time")
        ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig
