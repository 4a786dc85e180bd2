"""Describe stage: name the target trend with the caption bank.

The bank's core facets are ranked together as one look closest to the target centroid (`trendgen.design.look`:
"red" scores as "a red striped dress"), every other facet in the context of that look. Scores are cosine
similarities.

With `captions.templates` (a prompt ensemble), every text is scored as the normalised mean of its embeddings
in each template. Text embeddings are computed in batches and cached on disk under
`<paths.cache_dir>/caption_embeddings/`, one file per model and precision (keyed by the model folder's
identity and, but for fp32, the precision that ran the text tower: `trend.precision`) holding every text
embedded so far, so a second run with the same model and bank embeds only the few look captions it has not
seen.

Attributes over time (as GeoStyle and FIT count trends): for every facet, each photo's best caption in that
facet, scored as the trend's look with that one value changed (the `scored_as` texts: "a blue striped dress"
for colour=blue), counted per period with intervals, growth labels and forecasts (`trendgen.trends.timeline`);
duplicates the cluster stage dropped are left out.

The trend is named from both (`trendgen.design.naming`): the ranking above is the *cluster view*; the photos'
best captions are the *photo view*. For the dominant target each facet's named value is the caption most
photos of the last period carry (facet by facet, among the photos carrying the values named before it); for
an emerging one, the fastest-growing caption labelled emerging (else the cluster view). The named look
leads `overall`, each named value leads its facet's ranking in `facets` (which the prompt reads).

Artifacts (in `<output_dir>/describe/`): `captions.json` (`look` (named), `overall` (the named look, then
every caption by score) and `facets` (each facet's named value, then the others by score), each [{text,
facet, score, photos}], `attributes` {facet: {captions, shares, intervals, growth, forecast}}, `naming` {rule,
target_by, named {facet: {text, by}}}, `cluster_view` {look, facets}, `photo_view` {facet: {text, photos, of,
share, among} or {text, growth, share}}, the `precision` that ran the text tower) and
`top_text_embeddings.npy` (the overall top captions, in order; the generate stage reranks designs by them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trendgen.design.caption_bank import load_bank, resolve_bank_path
from trendgen.design.look import bank_template, look_facets, rank_bank
from trendgen.design.naming import name_facets, photo_captions, photo_shares
from trendgen.design.results import ClusterResult, DescribeResult, EmbedResult
from trendgen.design.store import Stage
from trendgen.errors import TrendgenError
from trendgen.identity import config_subset
from trendgen.inference.precision import Tower, torch_tower
from trendgen.inference.text_cache import TextEmbeddingCache, embed_texts, ensembled
from trendgen.trends.periods import period_rows

log = logging.getLogger(__name__)

CAPTIONS = "captions.json"
TOP_TEXT = "top_text_embeddings.npy"
LEARNT_VOCAB_LIMIT = 10_000  # below this, a tokenizer was learnt from a caption set (pretrained CLIP: 49,408)


def drop_unknown_words(bank: dict[str, list[str]], tokenizer: Any) -> tuple[dict[str, list[str]], list[str]]:
    """Leave out captions with a word the model never learnt, when its tokenizer was learnt from captions.

    A from-scratch model (`model.pretrained=false`) has a vocabulary of its training captions only; any other
    word falls apart into byte pieces whose embeddings never trained, so it scores noise. With a pretrained
    CLIP tokenizer every caption is kept. Returns (bank, captions left out).
    """
    if len(tokenizer) >= LEARNT_VOCAB_LIMIT:
        return bank, []
    known = {token.removesuffix("</w>") for token in tokenizer.get_vocab() if token.endswith("</w>")}

    def understood(caption: str) -> bool:
        return all(word in known for word in caption.lower().replace("-", " ").split())

    kept = {facet: [c for c in captions if understood(c)] for facet, captions in bank.items()}
    dropped = [c for captions in bank.values() for c in captions if not understood(c)]
    return {facet: captions for facet, captions in kept.items() if captions}, dropped


def attribute_series(
    bank: dict[str, list[str]],
    votes: dict[str, np.ndarray],
    period: np.ndarray,
    positions: list[int],
    trend: Any,
) -> dict[str, dict[str, Any]]:
    """Per facet: the share of photos whose best caption in that facet is each caption, over the periods."""
    from trendgen.trends.timeline import share_timeline, timeline_settings  # scipy.stats: when describing

    series = {}
    for facet, captions in bank.items():
        timeline = share_timeline(votes[facet], period, positions, len(captions), **timeline_settings(trend))
        series[facet] = {"captions": captions, **{k: timeline[k] for k in _SERIES_KEYS}}
    return series


_SERIES_KEYS = ("shares", "intervals", "growth", "forecast", "backtest")


def describe_target(
    bank: dict[str, list[str]],
    embed: Callable[[list[str]], np.ndarray],
    centroid: np.ndarray,
    captions_cfg: Any,
    trend: Any,
    photos: tuple[np.ndarray, np.ndarray, list[int], np.ndarray] | None = None,
    target_by: str = "dominant",
) -> dict[str, Any]:
    """The bank ranked against `centroid` (the cluster view), the attribute timelines, and the trend named by
    the rule of `target_by` (`trendgen.design.naming`): the record's `look`, `look_facets`, `overall`,
    `facets`, `attributes`, `naming`, `cluster_view` and `photo_view`.

    `embed`: L2-normalised text embeddings; `photos`: (embeddings, period number per row, period positions,
    cluster labels). The named look leads `overall` (then every caption by score), and each facet's named
    value leads its ranking in `facets` (then the others, by score); every caption carries `photos`, the
    share of the last period's photos that carry it.
    """
    target = centroid / max(float(np.linalg.norm(centroid)), 1e-12)
    cluster_look, entries = rank_bank(bank, lambda texts: embed(texts) @ target, captions_cfg.look_template)
    entries.sort(key=lambda e: -e["score"])  # stable: bank order breaks ties
    nearest = {f: next(e for e in entries if e["facet"] == f) for f in bank}
    attributes: dict[str, Any] = {}
    votes = in_last = None
    if photos is not None:
        embeddings, period, positions, labels = photos
        votes = photo_captions(entries, bank, embed, embeddings, labels)
        attributes = attribute_series(bank, votes, period, positions, trend)
        in_last = period == len(positions) - 1
        shares = photo_shares(bank, votes, in_last)
        for e in entries:
            e["photos"] = round(float(shares[e["facet"]][bank[e["facet"]].index(e["text"])]), 6)
    cluster_view = {f: e["text"] for f, e in nearest.items()}
    naming = name_facets(bank, cluster_view, target_by, votes, in_last, attributes)
    photo_view = naming.pop("photo_view")
    named = {f: n["text"] for f, n in naming["named"].items()}
    core = look_facets(captions_cfg.look_template, bank)
    look = cluster_look
    if cluster_look is not None:
        template = str(bank_template(captions_cfg.look_template, bank, say=False))
        text = template.format(**{f: named[f] for f in core})
        if text != cluster_look["text"]:
            look = {"text": text, "score": round(float(embed([text])[0] @ target), 6)}
    overall = ([{**look, "facet": "look", "scored_as": look["text"]}] if look else []) + entries
    entries = sorted(entries, key=lambda e: e["text"] != named[e["facet"]])  # the named value, then by score
    return {
        "look": look,
        "look_facets": core,
        "overall": overall[: int(captions_cfg.top_k)],
        "facets": {f: [e for e in entries if e["facet"] == f][: int(captions_cfg.per_facet)] for f in bank},
        "attributes": attributes,
        "naming": naming,
        "cluster_view": {
            "look": cluster_look,
            "facets": {f: {"text": e["text"], "score": e["score"]} for f, e in nearest.items()},
        },
        "photo_view": photo_view,
    }


def run(
    captions_cfg: Any,
    trend: Any,
    cache_dir: str | Path,
    clip: Any,
    model_identity: Any,
    centroid: np.ndarray,
    stage_dir: Path,
    tower: Tower | None = None,
    photos: tuple[np.ndarray, np.ndarray, list[int], np.ndarray] | None = None,
    target_by: str = "dominant",
) -> tuple[list[str], dict[str, Any]]:
    """Rank the bank against `centroid` and name the trend into `stage_dir` (`describe_target`); returns the
    files written and manifest info.

    `tower`: the text tower at the run's precision (`ClipTowers.tower("text")`); without one, fp32 torch.
    `photos`: (embeddings, period number per row, period positions, cluster labels) for the attribute series
    and the photo view; `target_by`: the rule that picked the target cluster (dominant | emerging).
    """
    _model, tokenizer, _ = clip
    tower = tower or torch_tower(clip[0])
    model, precision = tower.model, tower.autocast
    ran = tower.record["precision"]  # embeddings of one precision per cache file (fp32: the model's own)
    cache_identity = model_identity if ran == "32" else [model_identity, ran]
    bank, unknown = drop_unknown_words(load_bank(captions_cfg.bank), tokenizer)
    if unknown:
        log.info("left out %d captions with words the model never learnt", len(unknown))
    if not bank:
        raise TrendgenError(f"no caption of {captions_cfg.bank} uses words the model has learnt")
    batch = int(captions_cfg.batch_size)
    cache = TextEmbeddingCache(
        cache_dir, cache_identity, lambda t: embed_texts(model, tokenizer, t, batch, precision)
    )
    bank_texts = [c for captions in bank.values() for c in captions]
    templates = list(captions_cfg.get("templates") or [])
    embed = ensembled(cache, templates)
    hit = cache.has_all([t.replace("{caption}", c) for c in bank_texts for t in templates] or bank_texts)
    embed(bank_texts)  # the whole bank in a few batched forwards (or none, from the cache)
    record = describe_target(bank, embed, centroid, captions_cfg, trend, photos, target_by)
    cache.save()
    overall = record["overall"]
    record |= {
        "bank": str(resolve_bank_path(captions_cfg.bank)),
        "bank_size": len(bank_texts),
        "left_out_unknown_words": unknown,
        "precision": tower.record,
    }
    (stage_dir / CAPTIONS).write_text(json.dumps(record, indent=1))
    np.save(stage_dir / TOP_TEXT, embed([e["scored_as"] for e in overall]))
    # how this run got its text embeddings goes to the manifest: the artifacts hold only the result
    info = {"text_cache_hit": hit, "texts_embedded": cache.embedded, "text_cache_file": str(cache.path)}
    info |= {"precision": tower.record, **tower.info}
    return [CAPTIONS, TOP_TEXT], info


def load(stage_dir: Path) -> DescribeResult:
    """The ranked captions and top caption embeddings an earlier run of this stage wrote."""
    return DescribeResult(json.loads((stage_dir / CAPTIONS).read_text()), np.load(stage_dir / TOP_TEXT))


def _run_stage(design: Any, folder: Path) -> tuple[list[str], dict[str, Any]]:
    clusters: ClusterResult = design.results["cluster"]
    embedded: EmbedResult = design.results["embed"]
    periods, period = period_rows(embedded.index)
    photos = (embedded.embeddings, period, [int(p["position"]) for p in periods], clusters.labels)
    tower = design.towers.tower("text")
    cfg = design.cfg
    centroid = clusters.target_centroid
    return run(
        cfg.captions,
        cfg.trend,
        cfg.paths.cache_dir,
        design.clip,
        design.model_id,
        centroid,
        folder,
        tower,
        photos,
        clusters.target_by,
    )


STAGE = Stage(
    "describe",
    inputs=("embed", "cluster"),
    settings=lambda design: {
        "model": design.model_id,  # the text tower that ranks the bank
        "precision": design.towers.precision,
        "bank": design.bank_id,
        "captions": config_subset(design.cfg.captions, ["top_k", "per_facet", "look_template", "templates"]),
        "attributes": config_subset(design.cfg.trend, ["bootstrap", "confidence", "seed"]),
    },
    run=_run_stage,
    load=load,
)
