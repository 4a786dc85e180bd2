"""Describe stage: name the target trend with the caption bank.

CLIP scores whole descriptions far better than fragments, so the bank's core facets (`captions.look_template`,
by default `a {colour} {pattern} {garment}`) are ranked together: the stage searches for the look caption
closest to the target centroid (all combinations of the best few values of each facet, then coordinate
ascent over every value of each facet in turn), and each core value is scored by the look caption it makes
with the others fixed at the best look ("red" scores as "a red striped dress"). Every other facet is scored in
the context of that look ("a red striped dress, made of linen"). Scores are cosine similarities.

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
an emerging one, the caption whose share grows most significantly (else the cluster view). The named look
leads `overall`, each named value leads its facet's ranking in `facets` (which the prompt reads).

Artifacts (in `<output_dir>/describe/`): `captions.json` (`look` (named), `overall` (the named look, then
every caption by score) and `facets` (each facet's named value, then the others by score), each [{text,
facet, score, photos}], `attributes` {facet: {captions, shares, intervals, growth, forecast}}, `naming` {rule,
target_by, named {facet: {text, by}}}, `cluster_view` {look, facets}, `photo_view` {facet: {text, photos, of,
share, among} or {text, growth, share}}, the `precision` that ran the text tower) and
`top_text_embeddings.npy` (the overall top captions, in order; the generate stage reranks designs by them).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trendgen.design.caption_bank import load_bank, resolve_bank_path
from trendgen.design.naming import name_facets, photo_captions, photo_shares
from trendgen.design.results import ClusterResult, DescribeResult, EmbedResult
from trendgen.design.store import Stage
from trendgen.errors import TrendgenError
from trendgen.identity import config_subset
from trendgen.inference.precision import Tower, torch_tower
from trendgen.inference.text_cache import TextEmbeddingCache, embed_texts, ensembled
from trendgen.trends.periods import period_rows
from trendgen.trends.timeline import share_timeline, timeline_settings

log = logging.getLogger(__name__)

CAPTIONS = "captions.json"
TOP_TEXT = "top_text_embeddings.npy"
LOOK_BEAM = 6  # best values per core facet, combined exhaustively to start the coordinate ascent
LOOK_STARTS = 4  # best combinations the ascent starts from
LOOK_ROUNDS = 5
LOOK_CONTEXTS = 8  # random looks each value is scored in (then averaged) to pick the beams


def template_fields(template: str | None) -> list[str]:
    return [field for _, field, _, _ in string.Formatter().parse(template or "") if field]


# Words that make a caption a phrase of its own ("a photo of a dress", "with puff sleeves") rather than a bare
# value ("dress", "midi dress") that a look template can wrap.
PHRASE_WORDS = frozenset({"a", "an", "the", "of", "with", "in", "on", "for"})


def is_phrase(caption: str) -> bool:
    """Whether a caption already reads as a phrase (an article or a preposition among its words)."""
    return any(word in PHRASE_WORDS for word in caption.lower().split())


def composable(facet: str, bank: dict[str, list[str]]) -> bool:
    """A facet the look template can wrap: the bank has it and none of its captions is a phrase already."""
    return facet in bank and not any(is_phrase(c) for c in bank[facet])


def bank_template(template: str | None, bank: dict[str, list[str]], say: bool = True) -> str | None:
    """The look template with only the facets it can compose (`a {colour} {garment}` for a bank without
    patterns); None when none is left.

    A facet the bank lacks is dropped, and so is a facet whose captions are already phrases: wrapping
    "a photo of a dress" in "a {garment}" would read "a a photo of a dress". Such a facet is ranked alone,
    in its own words. `say`: log what was left out."""
    fields = template_fields(template)
    left_out = [f for f in fields if not composable(f, bank)]
    if not template or len(left_out) == len(fields):
        if say and template and any(f in bank for f in fields):
            log.info(
                "captions.look_template: the bank's %s captions are phrases; each is ranked as it is",
                [f for f in fields if f in bank],
            )
        return None
    if left_out and say:
        composed = look_facets(template, bank)
        log.info("captions.look_template: the look combines %s (not %s)", composed, left_out)
    for facet in left_out:
        template = re.sub(r"\s*\{" + re.escape(facet) + r"\}", "", template)
    return template.strip()


def look_facets(template: str | None, bank: dict[str, list[str]]) -> list[str]:
    """The facets the look combines: those of the look template that the bank has as bare values."""
    return list(dict.fromkeys(f for f in template_fields(template) if composable(f, bank)))


def search_look(
    score: Callable[[list[str]], np.ndarray],
    template: str,
    values: dict[str, list[str]],
    beam: int = LOOK_BEAM,
    starts: int = LOOK_STARTS,
) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """The best value of each core facet for `template`, and every value's score with the others at the best.

    Each facet's `beam` best values (by their mean score over a few random looks, seeded) are combined
    exhaustively; from each of the `starts` best combinations, coordinate ascent over all values of
    one facet at a time runs until a round changes nothing; the best look found wins.
    """
    first = {f: vals[0] for f, vals in values.items()}
    rng = np.random.default_rng(0)
    contexts = [
        {f: vals[rng.integers(len(vals))] for f, vals in values.items()} for _ in range(LOOK_CONTEXTS)
    ]
    beams = {}
    for facet, vals in values.items():
        texts = [template.format(**{**ctx, facet: v}) for ctx in contexts for v in vals]
        marginal = score(texts).reshape(len(contexts), len(vals)).mean(axis=0)
        beams[facet] = [vals[i] for i in np.argsort(-marginal, kind="stable")[:beam]]
    combos = [dict(zip(beams, combo, strict=True)) for combo in itertools.product(*beams.values())]
    combo_scores = score([template.format(**c) for c in combos])
    best_score, best, conditional = -np.inf, first, {}
    for i in np.argsort(-combo_scores, kind="stable")[:starts]:
        look, look_conditional = _ascend(score, template, values, dict(combos[i]))
        facet = next(iter(values))
        look_score = float(look_conditional[facet][values[facet].index(look[facet])])
        if look_score > best_score:
            best_score, best, conditional = look_score, look, look_conditional
    return best, conditional


def _ascend(
    score: Callable[[list[str]], np.ndarray],
    template: str,
    values: dict[str, list[str]],
    look: dict[str, str],
) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Coordinate ascent from `look`; every facet's scores end conditional on the final look."""
    conditional: dict[str, np.ndarray] = {}
    for _ in range(LOOK_ROUNDS):
        changed = False
        for facet, vals in values.items():
            conditional[facet] = score([template.format(**{**look, facet: v}) for v in vals])
            pick = vals[int(np.argmax(conditional[facet]))]
            changed |= pick != look[facet]
            look[facet] = pick
        if not changed:
            return look, conditional
    return look, {f: score([template.format(**{**look, f: v}) for v in vals]) for f, vals in values.items()}


def _fill(template: str | None, best: dict[str, str], facet: str, value: str) -> str:
    return str(template).format(**{**best, facet: value})


def rank_bank(
    bank: dict[str, list[str]], score: Callable[[list[str]], np.ndarray], template: str | None
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(the look {text, score} or None, every bank caption as {text, facet, score, scored_as})."""
    template = bank_template(template, bank)
    core = look_facets(template, bank)
    entries: list[dict[str, Any]] = []
    look = None
    context = "{caption}"
    if core:
        best, conditional = search_look(score, str(template), {f: bank[f] for f in core})
        text = str(template).format(**best)
        facet = core[0]
        look = {"text": text, "score": round(float(conditional[facet][bank[facet].index(best[facet])]), 6)}
        for facet in core:
            entries += [
                {
                    "text": v,
                    "facet": facet,
                    "score": round(float(s), 6),
                    "scored_as": _fill(template, best, facet, v),
                }
                for v, s in zip(bank[facet], conditional[facet], strict=True)
            ]
        context = text.replace("{", "{{").replace("}", "}}") + ", {caption}"
    for facet, captions in bank.items():
        if facet not in core:
            scored_as = [context.format(caption=c) for c in captions]
            entries += [
                {"text": c, "facet": facet, "score": round(float(s), 6), "scored_as": t}
                for c, s, t in zip(captions, score(scored_as), scored_as, strict=True)
            ]
    return look, entries


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
