"""The look: the caption bank's core facets (`captions.look_template`, by default `a {colour} {pattern}
{garment}`) composed into one caption, and the search for the look closest to the trend.

CLIP scores whole descriptions far better than fragments: every combination of the best few values of each
facet is scored, then coordinate ascent runs over every value of each facet in turn; each core value is scored
by the look it makes with the others fixed at the best look ("red" scores as "a red striped dress"), and every
other facet in the context of that look ("a red striped dress, made of linen"). A facet whose captions are
already phrases is never composed (see `bank_template`).
"""

from __future__ import annotations

import itertools
import logging
import re
import string
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

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
