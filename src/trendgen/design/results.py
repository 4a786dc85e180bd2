"""What each design stage hands to the stages after it, typed: one small dataclass per stage.

A stage's `load(folder)` returns its result; later stages read the fields they need, and each result writes
its own part of `trend.json` (`record_into`), so the run assembles the record without knowing any stage's
files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RecordContext:
    """What a result needs from the run to write its part of trend.json: the intervals' confidence, and how
    the run publishes a design file into its output folder (returns the published path)."""

    confidence: float
    publish: Callable[[Path], Path]


@dataclass(frozen=True)
class EmbedResult:
    """One embedding per used photo, and the index: `paths`, `sets` (each photo's period label), `periods`,
    `totals` (photos per period), `skipped` files with their reason, `precision` that ran the tower."""

    embeddings: np.ndarray
    index: dict[str, Any]

    @property
    def precision(self) -> dict[str, Any] | None:
        return self.index.get("precision")

    def record_into(self, trend: dict[str, Any], run: RecordContext) -> None:
        index = self.index
        skipped = [{"path": s["path"], "reason": s["reason"]} for s in index["skipped"]]
        total = sum(index["totals"].values())
        trend["images"] = {"total": total, "used": len(index["paths"]), "skipped": skipped}
        trend["images"]["reused_from_parts"] = index.get("reused_from_parts", 0)
        if len(index["totals"]) > 1:
            used = Counter(index["sets"])
            trend["images"]["periods"] = [
                {"label": label, "total": total, "used": used[label]}
                for label, total in index["totals"].items()
            ]


@dataclass(frozen=True)
class ClusterResult:
    """The clusters' record (`clusters`, `periods`, `k`, the dominant and target cluster and why, `dedup`),
    their centroids and each photo's label (-1: a dropped duplicate)."""

    record: dict[str, Any]
    centroids: np.ndarray
    labels: np.ndarray

    @property
    def target_centroid(self) -> np.ndarray:
        return self.centroids[self.record["target_cluster"]]

    @property
    def target_by(self) -> str:
        """The rule that picked the target: dominant | emerging (a record from before `target_by` was kept:
        by its reason)."""
        reason = str(self.record.get("target_reason", ""))
        return self.record.get("target_by") or ("emerging" if reason.startswith("emerging:") else "dominant")

    def record_into(self, trend: dict[str, Any], run: RecordContext) -> None:
        record = self.record
        trend.update(
            periods=record["periods"],
            clusters=record["clusters"],
            dominant_cluster=record["dominant_cluster"],
            target_cluster=record["target_cluster"],
            target_by=self.target_by,
            target_reason=record["target_reason"],
            k=record["k"],
            k_chosen_by=record["k_chosen_by"],
        )
        if record.get("backtest"):
            trend["backtest"] = record["backtest"]
        if "dedup" in record:
            trend.setdefault("images", {})["dropped_duplicates"] = record["dedup"]


@dataclass(frozen=True)
class DescribeResult:
    """The ranked captions (`look`, `look_facets`, `overall`, `facets`, `attributes`, `naming`,
    `cluster_view`, `photo_view`, `precision`) and the embeddings of the overall top captions, in order (the
    rerank scores designs against them)."""

    captions: dict[str, Any]
    top_text: np.ndarray

    @property
    def precision(self) -> dict[str, Any] | None:
        return self.captions.get("precision")

    def record_into(self, trend: dict[str, Any], run: RecordContext) -> None:
        captions = self.captions
        if captions.get("attributes"):
            trend["timeline"] = {
                "periods": trend.get("periods"),
                "confidence": run.confidence,
                "attributes": captions["attributes"],
            }
        trend.update(
            look=captions["look"],
            captions=_public(captions["overall"]),
            facets={f: _public(rows) for f, rows in captions["facets"].items()},
        )
        for view in ("naming", "cluster_view", "photo_view"):  # how the trend was named, both views
            if view in captions:
                trend[view] = captions[view]


def _public(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: e[k] for k in ("text", "facet", "score", "photos") if k in e} for e in rows]


@dataclass(frozen=True)
class PromptResult:
    """The prompt record: `text`, `generator_text` (what the generator is given), `source`,
    `fallback_reason`, `attempts`, `tokens`, `token_limit`, `uncut_text`."""

    record: dict[str, Any]

    @property
    def text(self) -> str:
        return self.record["text"]

    @property
    def generator_text(self) -> str:
        return self.record.get("generator_text") or self.record["text"]

    def record_into(self, trend: dict[str, Any], run: RecordContext) -> None:
        trend["prompt"] = {
            "text": self.text,
            "generator_text": self.generator_text,
            "source": self.record["source"],
            "fallback_reason": self.record["fallback_reason"],
        }


@dataclass(frozen=True)
class GenerateResult:
    """The designs record: `generator`, `source`, `prompt`, `designs` best first ({path, file, seed, score,
    ...}, paths inside this run's stage folder) and `precision` that ran the rerank."""

    record: dict[str, Any]

    @property
    def designs(self) -> list[dict[str, Any]]:
        return self.record["designs"]

    @property
    def precision(self) -> dict[str, Any] | None:
        return self.record.get("precision")

    def record_into(self, trend: dict[str, Any], run: RecordContext) -> None:
        """Each design as the run publishes it into its output folder."""
        trend["designs"] = [
            {"path": str(run.publish(Path(d["path"]))), "seed": d["seed"], "score": d["score"]}
            for d in self.designs
        ]
