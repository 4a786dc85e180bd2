"""The look search and the ranking of the bank, with a scorer whose best answer is known; the text cache."""

from __future__ import annotations

import numpy as np
from helpers.design import compose_design

from trendgen.design.look import bank_template, look_facets, rank_bank, search_look
from trendgen.inference.text_cache import TextEmbeddingCache

BANK = {
    "garment": ["coat", "skirt", "dress", "trousers"],
    "colour": ["blue", "pink", "red", "green"],
    "pattern": ["solid", "floral", "striped", "checked"],
    "material": ["made of wool", "made of linen"],
}
TEMPLATE = "a {colour} {pattern} {garment}"


def scorer(target: str, liked_context: str = "made of linen"):
    """Words shared with the target look count; a whole match scores most; one context phrase is preferred.

    The first values of each facet score highest on their own (a trap for a greedy start).
    """
    calls: list[list[str]] = []

    def score(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        out = []
        for text in texts:
            look, _, context = text.partition(", ")
            shared = len(set(look.split()) & set(target.split()))
            lure = 0.5 * sum(w in look.split() for w in ("coat", "blue", "solid"))
            out.append(
                shared + 3.0 * (look == target) + lure * (shared < 3) + 0.1 * (context == liked_context)
            )
        return np.array(out)

    return score, calls


def test_search_finds_the_best_look_and_scores_each_value_in_it():
    score, _ = scorer("a red striped dress")
    best, conditional = search_look(score, TEMPLATE, {f: BANK[f] for f in ("colour", "pattern", "garment")})
    assert best == {"colour": "red", "pattern": "striped", "garment": "dress"}
    # "red" scores as "a red striped dress", "pink" as "a pink striped dress"
    colours = dict(zip(BANK["colour"], conditional["colour"], strict=True))
    assert colours["red"] == score(["a red striped dress"])[0]
    assert colours["pink"] == score(["a pink striped dress"])[0] < colours["red"]


def test_rank_bank_composes_the_look_and_scores_other_facets_in_its_context():
    score, calls = scorer("a red striped dress")
    look, entries = rank_bank(BANK, score, TEMPLATE)
    assert look["text"] == "a red striped dress"
    by_text = {e["text"]: e for e in entries}
    assert set(by_text) == {c for captions in BANK.values() for c in captions}
    assert by_text["red"]["scored_as"] == "a red striped dress"
    assert by_text["pink"]["scored_as"] == "a pink striped dress"
    assert by_text["made of linen"]["scored_as"] == "a red striped dress, made of linen"
    assert by_text["made of linen"]["score"] > by_text["made of wool"]["score"]
    assert all(len(batch) > 1 for batch in calls)  # scored in batches, never one caption at a time


def test_without_a_template_every_caption_is_scored_alone():
    score, _ = scorer("a red striped dress")
    look, entries = rank_bank(BANK, score, None)
    assert look is None
    assert all(e["scored_as"] == e["text"] for e in entries)


def test_the_look_combines_only_the_facets_the_bank_has():
    default = compose_design([]).captions.look_template  # "a {colour} {pattern} {garment}"
    garments = {"garment": ["dress", "coat", "trouser", "sneaker"]}  # a one-facet bank of the user's own
    assert bank_template(default, garments) == "a {garment}"
    assert look_facets(bank_template(default, garments), garments) == ["garment"]
    assert bank_template("a {colour} {fabric} {garment}", BANK) == "a {colour} {garment}"
    assert bank_template("a {fabric}", BANK) is None  # none of its facets: captions are scored alone
    score, _ = scorer("a coat")
    look, entries = rank_bank(garments, score, default)
    assert look["text"] == "a coat"
    best = max(entries, key=lambda e: e["score"])
    assert best["text"] == "coat" and best["scored_as"] == "a coat"


def test_a_facet_of_phrases_is_ranked_in_its_own_words_never_wrapped_in_the_template():
    default = compose_design([]).captions.look_template  # "a {colour} {pattern} {garment}"
    phrases = {"garment": ["a photo of a t-shirt", "a photo of a dress", "a photo of a coat"]}
    assert bank_template(default, phrases) is None  # not "a {garment}": that reads "a a photo of a dress"
    assert look_facets(default, phrases) == []
    score, _ = scorer("a photo of a dress")
    look, entries = rank_bank(phrases, score, default)
    assert look is None
    best = max(entries, key=lambda e: e["score"])
    assert best["text"] == best["scored_as"] == "a photo of a dress"
    # Bare colours still compose with a bare garment; a facet of phrases beside them is ranked alone.
    mixed = {"garment": ["dress", "coat"], "colour": ["red", "blue"], "details": ["with a belted waist"]}
    assert bank_template("a {colour} {details} {garment}", mixed) == "a {colour} {garment}"
    look, entries = rank_bank(mixed, scorer("a red dress")[0], "a {colour} {details} {garment}")
    assert look["text"] == "a red dress"
    details = next(e for e in entries if e["facet"] == "details")
    assert details["scored_as"] == "a red dress, with a belted waist"


def test_text_cache_embeds_only_unseen_texts_and_persists(tmp_path):
    seen: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        seen.append(texts)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    cache = TextEmbeddingCache(tmp_path, ["model", 1], embed)
    first = cache(["a", "bb", "a"])
    assert seen == [["a", "bb"]] and first.shape == (3, 2)
    cache.save()
    again = TextEmbeddingCache(tmp_path, ["model", 1], embed)
    assert again.has_all(["a", "bb"]) and not again.has_all(["ccc"])
    np.testing.assert_array_equal(again(["bb", "ccc"]), [[2, 1], [3, 1]])
    assert seen[-1] == ["ccc"] and again.embedded == 1
    other_model = TextEmbeddingCache(tmp_path, ["model", 2], embed)
    assert not other_model.has_all(["a"])


def test_captions_with_words_a_from_scratch_model_never_learnt_are_left_out():
    from trendgen.design.describe import drop_unknown_words
    from trendgen.model.tokenizer import train_caption_tokenizer

    tokenizer = train_caption_tokenizer(["a red striped dress", "a blue checked coat"], vocab_size=600)
    bank = {"garment": ["dress", "cargo trousers"], "colour": ["red", "navy"], "material": ["made of linen"]}
    kept, dropped = drop_unknown_words(bank, tokenizer)
    assert kept == {"garment": ["dress"], "colour": ["red"]}
    assert dropped == ["cargo trousers", "navy", "made of linen"]


def test_a_prompt_ensemble_averages_each_text_over_its_templates():
    import pytest

    from trendgen.errors import TrendgenError
    from trendgen.inference.text_cache import ensembled

    rng = np.random.default_rng(0)
    table: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:  # a fixed random unit vector per text
        for t in texts:
            table.setdefault(t, rng.standard_normal(8))
        rows = np.stack([table[t] for t in texts])
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)

    assert ensembled(embed, []) is embed
    np.testing.assert_allclose(
        ensembled(embed, ["{caption}"])(["a red dress"]), embed(["a red dress"]), atol=1e-6
    )
    two = ensembled(embed, ["{caption}", "a photo of {caption}"])(["a red dress", "a coat"])
    mean = embed(["a red dress"])[0] + embed(["a photo of a red dress"])[0]
    np.testing.assert_allclose(two[0], mean / np.linalg.norm(mean), atol=1e-6)
    assert not np.allclose(two[0], embed(["a red dress"])[0])
    with pytest.raises(TrendgenError, match=r"needs \{caption\}"):
        ensembled(embed, ["a photo of {}"])
