"""The template prompt writer, the cut to the generator's 77-token limit, what counts as a usable answer."""

from __future__ import annotations

import json

import pytest
from helpers.design import REPO, compose_design

from trendgen.design import prompt
from trendgen.design.caption_bank import flatten, load_bank
from trendgen.model.tokenizer import train_caption_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    texts, _ = flatten(load_bank(REPO / "conf" / "captions" / "bank.yaml"))
    return train_caption_tokenizer(texts, vocab_size=1024, model_max_length=77)


def ranked(facet: str, *texts: str) -> list[dict]:
    return [{"text": t, "facet": facet, "score": 0.9 - i / 10} for i, t in enumerate(texts)]


def test_shipped_bank_has_200_captions_over_the_promised_facets(tmp_path):
    bank = load_bank(REPO / "conf" / "captions" / "bank.yaml")
    assert sum(len(c) for c in bank.values()) >= 200
    assert set(bank) == {
        "garment",
        "colour",
        "pattern",
        "material",
        "fit and silhouette",
        "details and finishes",
        "aesthetic",
        "footwear and accessories",
    }
    from trendgen.data.synthetic import COLORS, GARMENTS, PATTERNS

    # the synthetic demo's vocabulary is in the bank, so a CLIP trained on it can name the planted look
    for words, facet in ((GARMENTS, "garment"), (COLORS, "colour"), (PATTERNS, "pattern")):
        assert set(words) <= set(bank[facet]), facet
    template = compose_design([]).captions.look_template
    assert template.format(colour="red", pattern="striped", garment="dress") == "a red striped dress"


def test_template_is_the_look_then_the_best_caption_of_each_other_facet():
    captions = {
        "look": {"text": "a red striped dress", "score": 0.9},
        "look_facets": ["colour", "pattern", "garment"],
        "facets": {
            "garment": ranked("garment", "dress", "coat"),
            "colour": ranked("colour", "red", "blue"),
            "pattern": ranked("pattern", "striped"),
            "material": ranked("material", "made of linen", "made of wool"),
            "aesthetic": ranked("aesthetic", "minimalist style"),
        },
    }
    text = prompt.template_prompt(captions)
    expected = ["a red striped dress", "made of linen", "minimalist style", *prompt.TEMPLATE_SUFFIX]
    assert text == ", ".join(expected)
    assert prompt.template_prompt(captions) == text
    no_look = prompt.template_prompt({**captions, "look": None})
    assert no_look.startswith("dress, red, striped, made of linen, minimalist style, ")


def test_long_prompt_is_cut_at_a_phrase_boundary_within_77_tokens(tokenizer):
    phrases = [
        f"{colour} {garment} with {detail}"
        for colour in ("red", "navy blue", "olive green")
        for garment in ("dress", "coat", "jacket")
        for detail in ("pleats", "a bow", "patch pockets")
    ]
    long_text = ", ".join(phrases)
    assert prompt.token_count(long_text, tokenizer) > 77
    cut = prompt.cut_to_token_limit(long_text, tokenizer, 77)
    kept = cut.split(", ")
    assert kept == phrases[: len(kept)] and len(kept) >= 3
    assert prompt.token_count(cut, tokenizer) <= 77
    assert prompt.token_count(", ".join(phrases[: len(kept) + 1]), tokenizer) > 77
    short = "a dress, in red"
    assert prompt.cut_to_token_limit(short, tokenizer, 77) == short


def test_one_overlong_phrase_is_cut_at_a_word_boundary(tokenizer):
    words = ["pleated"] * 120
    cut = prompt.cut_to_token_limit(" ".join(words), tokenizer, 20)
    assert cut and set(cut.split()) == {"pleated"}
    assert prompt.token_count(cut, tokenizer) <= 20


def test_prompt_stage_records_source_and_cut_text(tmp_path, tokenizer):
    cfg = compose_design(["llm=template"])
    facets = {
        "garment": ranked("garment", *[f"a dress number {i} with many small details" for i in range(3)])
    }
    facets.update(
        {f"facet {i}": ranked(f"facet {i}", f"phrase {i} of the look, rather long") for i in range(12)}
    )
    captions = {"look": None, "facets": facets, "overall": [rows[0] for rows in facets.values()]}
    prompt.run(cfg.llm, captions, tokenizer, tmp_path, limit=77)
    record = json.loads((tmp_path / "prompt.json").read_text())
    assert record["source"] == "template" and record["fallback_reason"] is None
    assert record["tokens"] <= 77 < prompt.token_count(record["uncut_text"], tokenizer)
    assert record["uncut_text"].startswith(record["text"])


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('"a red striped dress, cotton, studio light"', "a red striped dress, cotton, studio light"),
        ("Prompt: a red striped dress, full body", "a red striped dress, full body"),
        ("```a red striped dress\nwith pleats```", "a red striped dress with pleats"),
    ],
)
def test_clean_answer_keeps_the_prompt_only(answer, expected):
    assert prompt.clean_answer(answer) == expected


@pytest.mark.parametrize(
    "answer", ["", "   ", "ok", "Sorry, I cannot do that.", "As an AI, I won't", None, 42]
)
def test_unusable_answers_are_refused(answer):
    with pytest.raises(prompt.UnusableAnswer):
        prompt.clean_answer(answer)
