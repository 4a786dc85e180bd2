"""Prompt stage: the ranked captions become one diffusion prompt, written by an LLM or by a template.

`llm=openai` calls any OpenAI-compatible chat server through the OpenAI Python SDK (`llm.base_url`,
`llm.model`), with the key read from OPENAI_API_KEY only. The SDK itself retries rate limits (429), server
errors (5xx), time-outs and dropped connections `llm.max_retries` times, with its exponential backoff or the
server's Retry-After. When the LLM still fails, or answers something unusable (empty, too short, a refusal, a
malformed body), the template writer takes over and the reason is recorded: a run is never lost to the LLM.
`llm=template` is that offline, deterministic writer: the trend's look caption, the best caption of every
other facet (bank order) and a few photography words.

Either way the prompt is cut to the generator's text-encoder limit (77 CLIP tokens) with the generator's own
tokenizer, at phrase (comma) boundaries. Artifacts (in `<output_dir>/prompt/`): `prompt.json` ({text, source,
fallback_reason, attempts: the HTTP requests sent, tokens}).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trendgen.design.results import DescribeResult, PromptResult
from trendgen.design.store import Stage
from trendgen.errors import TrendgenError
from trendgen.identity import config_subset
from trendgen.inference.clip_forward import CLIP_TOKEN_LIMIT
from trendgen.tracking.secrets_env import OPENAI_API_KEY as API_KEY_ENV

if TYPE_CHECKING:
    from trendgen.design.generate import GeneratorLanguage

log = logging.getLogger(__name__)

PROMPT = "prompt.json"
TEMPLATE_SUFFIX = ["fashion design", "studio photograph", "full body", "plain background", "high detail"]
MIN_WORDS = 3
_REFUSAL = re.compile(
    r"^\s*(i'?m sorry|i am sorry|sorry,|i can(?:'|no)t|i cannot|i'?m unable|i am unable|as an ai\b"
    r"|unfortunately)",
    re.IGNORECASE,
)


class UnusableAnswer(Exception):
    """The LLM answered, but nothing a diffusion model can use."""


def template_prompt(captions: dict[str, Any]) -> str:
    """The look, the best caption of every other facet (bank order), then photography words; deterministic.

    `captions` is the describe stage's record: `look` ({text, score} or None), `look_facets` (the facets the
    look already names) and `facets` (facet -> ranked [{text, facet, score}]).
    """
    look = captions.get("look")
    named = set(captions.get("look_facets") or []) if look else set()
    phrases = [look["text"]] if look else []
    phrases += [
        ranked[0]["text"] for facet, ranked in captions["facets"].items() if ranked and facet not in named
    ]
    return ", ".join([*phrases, *TEMPLATE_SUFFIX])


def token_count(text: str, tokenizer: Any) -> int:
    """Tokens the text encoder sees, BOS and EOS included."""
    return len(tokenizer(text, truncation=False)["input_ids"])


def cut_to_token_limit(text: str, tokenizer: Any, limit: int = CLIP_TOKEN_LIMIT) -> str:
    """The longest run of leading comma-separated phrases that fits in `limit` tokens.

    A first phrase longer than the limit is cut at a word boundary instead.
    """
    text = " ".join(text.split())
    if token_count(text, tokenizer) <= limit:
        return text
    phrases = [p.strip() for p in text.split(",") if p.strip()]
    kept: list[str] = []
    for phrase in phrases:
        if token_count(", ".join([*kept, phrase]), tokenizer) > limit:
            break
        kept.append(phrase)
    if kept:
        return ", ".join(kept)
    words = phrases[0].split() if phrases else text.split()
    while words and token_count(" ".join(words), tokenizer) > limit:
        words.pop()
    return " ".join(words)


_TERMINAL_ESCAPE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` without terminal escape sequences (colours, cursor moves, titles) and control characters: an
    LLM's answer is printed and stored, and must not drive the terminal that shows it."""
    return _CONTROL.sub("", _TERMINAL_ESCAPE.sub("", text))


def clean_answer(content: Any) -> str:
    """The prompt from an LLM answer, or UnusableAnswer saying why it cannot be used."""
    if not isinstance(content, str):
        raise UnusableAnswer(f"malformed answer: message content is {type(content).__name__}")
    text = printable(content).strip().strip("`").strip()
    text = re.sub(r"^(prompt|diffusion prompt)\s*:\s*", "", text, flags=re.IGNORECASE)
    text = " ".join(text.strip().strip('"').strip("'").split())
    if not text:
        raise UnusableAnswer("empty answer")
    if _REFUSAL.match(text):
        raise UnusableAnswer(f"refusal: {text[:80]!r}")
    if len(text.split()) < MIN_WORDS:
        raise UnusableAnswer(f"answer too short: {text!r}")
    return text


def format_captions(overall: list[dict[str, Any]]) -> str:
    return "\n".join(f"- {c['text']} ({c['facet']}, {c['score']:.3f})" for c in overall)


def ask_llm(llm: Any, captions_text: str, api_key: str, sent: list[str]) -> str:
    """The LLM's prompt; raises the SDK's last error or UnusableAnswer.

    The SDK retries transient failures (`llm.max_retries`, its backoff or the server's Retry-After). Each HTTP
    request it sends is appended to `sent` (its URL path only: never a header, so never the key).
    """
    import openai  # the SDK loads only for llm=openai

    hooks = {"request": [lambda request: sent.append(request.url.path)]}
    with openai.OpenAI(
        base_url=llm.base_url or None,
        api_key=api_key,
        timeout=float(llm.timeout_s),
        max_retries=int(llm.max_retries),
        http_client=openai.DefaultHttpxClient(event_hooks=hooks),
    ) as client:
        reply = client.chat.completions.create(
            model=llm.model,
            messages=[
                {"role": "system", "content": llm.system_prompt},
                {"role": "user", "content": llm.user_template.format(captions=captions_text)},
            ],
            temperature=float(llm.temperature),
            max_tokens=int(llm.max_tokens),
        )
    return clean_answer(_content(reply))


def _content(reply: Any) -> Any:
    try:
        return reply.choices[0].message.content
    except (AttributeError, IndexError, TypeError) as err:
        raise UnusableAnswer(f"malformed answer: {type(err).__name__}: {err}") from None


def _describe_error(err: Exception) -> str:
    status = getattr(err, "status_code", None)
    name = type(err).__name__
    return f"{name} (HTTP {status})" if status else name


def write_prompt(llm: Any, captions: dict[str, Any]) -> dict[str, Any]:
    """{text, source, fallback_reason, attempts} before the token cut (`captions`: see `template_prompt`)."""
    template = template_prompt(captions)
    if llm.name == "template":
        return {"text": template, "source": "template", "fallback_reason": None, "attempts": 0}
    if llm.name != "openai":
        raise TrendgenError(f"llm.name must be 'openai' or 'template', not {llm.name!r}")
    if int(llm.max_retries) < 0:
        raise TrendgenError(f"llm.max_retries must be 0 or more, not {llm.max_retries}")
    api_key = os.environ.get(API_KEY_ENV, "").strip()
    if not api_key:
        reason = f"{API_KEY_ENV} is not set"
        return {"text": template, "source": "template", "fallback_reason": reason, "attempts": 0}
    import openai

    sent: list[str] = []
    try:
        answer = ask_llm(llm, format_captions(captions["overall"]), api_key, sent)
        return {"text": answer, "source": "openai", "fallback_reason": None, "attempts": len(sent)}
    except UnusableAnswer as err:
        reason = f"unusable LLM answer: {err}"
    except openai.APIResponseValidationError as err:
        reason = f"unusable LLM answer: malformed body ({_describe_error(err)})"
    except openai.APIError as err:  # retried by the SDK where retrying can help
        tries = f"{len(sent)} {'try' if len(sent) == 1 else 'tries'}"
        reason = f"LLM failed after {tries}: {_describe_error(err)}"
    except (ValueError, TypeError) as err:  # a body the SDK could not parse
        reason = f"unusable LLM answer: malformed body ({type(err).__name__})"
    log.warning("prompt: falling back to the template writer: %s", reason)
    return {"text": template, "source": "template", "fallback_reason": reason, "attempts": len(sent)}


def run(
    llm: Any,
    captions: dict[str, Any],
    tokenizer: Any,
    stage_dir: Path,
    limit: int = CLIP_TOKEN_LIMIT,
    language: GeneratorLanguage | None = None,
) -> list[str]:
    """Write the prompt, cut to `limit` tokens of `tokenizer`, into `stage_dir`; returns the files written.

    `generator_text` is what the generator is given: for a generator that learnt a closed vocabulary (a
    trendgen-trained pixel generator, `language`), the prompt in the words it knows, phrased as one of its
    training captions where one holds them all; otherwise the prompt itself.
    """
    from trendgen.generator.export import generator_text

    record = write_prompt(llm, captions)
    record["uncut_text"] = record["text"]
    record["text"] = cut_to_token_limit(record["text"], tokenizer, limit)
    record["generator_text"] = cut_to_token_limit(
        generator_text(
            record["text"], language.vocabulary if language else None, language.captions if language else None
        ),
        tokenizer,
        limit,
    )
    record["tokens"] = token_count(record["text"], tokenizer)
    record["token_limit"] = limit
    (stage_dir / PROMPT).write_text(json.dumps(record, indent=1))
    return [PROMPT]


def load(stage_dir: Path) -> PromptResult:
    return PromptResult(json.loads((stage_dir / PROMPT).read_text()))


def _tokenizer_identity(design: Any) -> list[Any]:
    """What decides the tokenizer the prompt is cut with: the generator's, or the CLIP's without one."""
    from trendgen.design.generate import generator_kind

    gen = design.cfg.generator
    kind = generator_kind(gen)
    if not kind.draws:
        return ["clip", design.model_id]
    return [gen.name, gen.name_or_path, design.generator_id, design.bank_id if kind.reads_bank else None]


def _settings(design: Any) -> dict[str, Any]:
    llm = design.cfg.llm
    return {
        "llm": config_subset(llm, list(llm.keys())),
        "key_present": bool(os.environ.get(API_KEY_ENV)) if llm.name == "openai" else None,
        "tokenizer": _tokenizer_identity(design),
    }


def _run_stage(design: Any, folder: Path) -> tuple[list[str], dict[str, Any]]:
    from trendgen.design import generate

    described: DescribeResult = design.results["describe"]
    source = design.generator_source()
    if source is None:
        tokenizer, limit = design.clip[1], CLIP_TOKEN_LIMIT
    else:
        tokenizer, limit = generate.generator_tokenizer(source)
    files = run(
        design.cfg.llm, described.captions, tokenizer, folder, limit, generate.generator_language(source)
    )
    return files, {
        "reusable": load(folder).record["fallback_reason"] is None
    }  # a fallback is retried next run


STAGE = Stage("prompt", inputs=("describe",), settings=_settings, run=_run_stage, load=load)
