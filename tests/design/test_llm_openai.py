"""The prompt stage's OpenAI client against a real OpenAI-compatible HTTP server on loopback.

The server runs in a thread and answers from a script: a normal answer, a 429 then an answer, 500s, a reply
slower than `llm.timeout_s`, a malformed body. The SDK talks to it over a real socket through `llm.base_url`
and retries by itself; error answers carry `Retry-After-Ms: 10` (the SDK's own backoff would add seconds)
unless a test scripts its own headers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.design import base_overrides, compose_design, make_tiny_clip, run_cli, write_looks
from helpers.llm_server import ANSWER, ScriptedServer

from trendgen.design import prompt
from trendgen.recipes.design import run_design

SECRET = "sk-test-not-a-real-key-7f3a9c"
FACETS = {
    "garment": [{"text": "dress", "facet": "garment", "score": 0.9}],
    "colour": [{"text": "red", "facet": "colour", "score": 0.8}],
    "material": [{"text": "made of linen", "facet": "material", "score": 0.7}],
}
CAPTIONS = {
    "look": {"text": "a red dress", "score": 0.9},
    "look_facets": ["colour", "garment"],
    "facets": FACETS,
    "overall": [{"text": "a red dress", "facet": "look", "score": 0.9}, *(r[0] for r in FACETS.values())],
}


@pytest.fixture()
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def llm_cfg(server: ScriptedServer, *extra: str) -> Any:
    overrides = [
        "llm=openai",
        f"llm.base_url={server.base_url}",
        "llm.model=test-model",
        "llm.timeout_s=5",
        "llm.max_retries=2",
        *extra,
    ]
    return compose_design(overrides)


def test_normal_answer_uses_conf_instructions_and_env_key(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.script = [("ok", f'"{ANSWER}"')]
    cfg = llm_cfg(server)
    record = prompt.write_prompt(cfg.llm, CAPTIONS)
    assert record == {"text": ANSWER, "source": "openai", "fallback_reason": None, "attempts": 1}
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {SECRET}"
    body = request["body"]
    assert body["model"] == "test-model"
    assert body["messages"][0] == {"role": "system", "content": cfg.llm.system_prompt}
    assert "- a red dress (look, 0.900)\n- dress (garment, 0.900)" in body["messages"][1]["content"]
    assert "made of linen (material, 0.700)" in body["messages"][1]["content"]


def test_429_then_answer_is_retried(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.script = [("status", 429), ("ok", ANSWER)]
    record = prompt.write_prompt(llm_cfg(server).llm, CAPTIONS)
    assert record["source"] == "openai" and record["text"] == ANSWER
    assert len(server.requests) == 2 and record["attempts"] == 2
    assert [r["headers"]["authorization"] for r in server.requests] == [f"Bearer {SECRET}"] * 2


def test_the_servers_retry_after_is_honoured(server, monkeypatch):
    """A 429 saying `Retry-After: 1` is retried a second later, not after the SDK's first backoff (<0.5 s)."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.script = [("status", 429, {"Retry-After": "1"}), ("ok", ANSWER)]
    record = prompt.write_prompt(llm_cfg(server).llm, CAPTIONS)
    assert record["source"] == "openai" and record["attempts"] == 2
    assert server.requests[1]["at"] - server.requests[0]["at"] >= 0.95


def test_a_refused_key_is_not_retried(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.script = [("status", 401)]
    record = prompt.write_prompt(llm_cfg(server).llm, CAPTIONS)
    assert len(server.requests) == 1 and record["source"] == "template"
    assert record["fallback_reason"] == "LLM failed after 1 try: AuthenticationError (HTTP 401)"


def test_500s_until_retries_run_out_fall_back_to_template(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.script = [("status", 500)] * 3 + [("ok", ANSWER)]
    record = prompt.write_prompt(llm_cfg(server, "llm.max_retries=2").llm, CAPTIONS)
    assert len(server.requests) == 3  # one try and two retries, then no more
    assert record["source"] == "template"
    assert record["text"] == prompt.template_prompt(CAPTIONS)
    assert record["fallback_reason"] == "LLM failed after 3 tries: InternalServerError (HTTP 500)"
    assert record["attempts"] == 3


def test_timeout_falls_back_after_retries(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.script = [("sleep", 1.5), ("sleep", 1.5)]  # slower than llm.timeout_s, then a normal answer
    record = prompt.write_prompt(llm_cfg(server, "llm.timeout_s=0.3", "llm.max_retries=1").llm, CAPTIONS)
    assert len(server.requests) == 2
    assert record["source"] == "template"
    assert record["fallback_reason"] == "LLM failed after 2 tries: APITimeoutError"


def test_malformed_body_falls_back(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.script = [("malformed",)]
    record = prompt.write_prompt(llm_cfg(server).llm, CAPTIONS)
    assert record["source"] == "template"
    assert record["fallback_reason"].startswith("unusable LLM answer: malformed")
    assert len(server.requests) == 1  # a malformed answer is not retried


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("", "unusable LLM answer: empty answer"),
        ("dress", "unusable LLM answer: answer too short: 'dress'"),
        ("I'm sorry, but I can't help with that request.", "unusable LLM answer: refusal"),
    ],
)
def test_unusable_answers_fall_back(server, monkeypatch, answer, reason):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.script = [("ok", answer)]
    record = prompt.write_prompt(llm_cfg(server).llm, CAPTIONS)
    assert record["source"] == "template"
    assert record["fallback_reason"].startswith(reason)


def test_missing_key_falls_back_without_calling(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    record = prompt.write_prompt(llm_cfg(server).llm, CAPTIONS)
    assert record["source"] == "template"
    assert record["fallback_reason"] == "OPENAI_API_KEY is not set"
    assert server.requests == [] and record["attempts"] == 0


def test_design_cli_sends_the_key_and_writes_it_nowhere(server, tmp_path):
    """`trendgen-design llm=openai` as a user runs it: the LLM's answer becomes prompt.txt, the server got the
    key, and no file the run wrote (outputs, Hydra files, design.log, caches) nor its output holds it, even
    with the SDK logging at debug level."""
    model = make_tiny_clip(tmp_path / "model")
    looks = write_looks(tmp_path / "looks", n=12)
    overrides = [
        *base_overrides(tmp_path, model, looks),
        "llm=openai",
        f"llm.base_url={server.base_url}",
        "generator=none",
        "design.stages=[embed,cluster,describe,prompt]",
    ]
    result = run_cli(overrides, tmp_path, env={"OPENAI_API_KEY": SECRET, "OPENAI_LOG": "debug"})
    assert result.returncode == 0, result.stderr[-3000:]
    (request,) = server.requests
    assert request["headers"]["authorization"] == f"Bearer {SECRET}"  # the run really used the key
    trend = json.loads((tmp_path / "out" / "trend.json").read_text())
    # generator=none has an open vocabulary: the generator would be given the prompt as written
    assert trend["prompt"] == {
        "text": ANSWER,
        "generator_text": ANSWER,
        "source": "openai",
        "fallback_reason": None,
    }
    assert (tmp_path / "out" / "prompt.txt").read_text() == ANSWER + "\n"
    sent = request["body"]["messages"][1]["content"]
    assert all(c["text"] in sent for c in trend["captions"])  # the ranked captions went to the LLM
    assert (tmp_path / "hydra_run" / "design.log").stat().st_size > 0
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == [] and SECRET not in result.stdout + result.stderr


def test_terminal_escapes_in_an_llm_reply_reach_no_terminal_or_file(server, tmp_path, monkeypatch, capsys):
    """An answer with ANSI colour, a screen clear, a title change and a bell becomes a plain prompt: in
    trend.json, prompt.txt and on stdout."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.script = [
        ("ok", "\x1b[2J\x1b]0;owned\x07\x1b[31ma red striped\x07 midi dress\x1b[0m, studio photograph")
    ]
    model = make_tiny_clip(tmp_path / "model")
    overrides = [
        *base_overrides(tmp_path, model, write_looks(tmp_path / "looks", n=12)),
        "llm=openai",
        f"llm.base_url={server.base_url}",
        "generator=none",
        "design.stages=[embed,cluster,describe,prompt]",
    ]
    trend = run_design(compose_design(overrides))
    assert trend["prompt"]["text"] == "a red striped midi dress, studio photograph"
    assert (tmp_path / "out" / "prompt.txt").read_text() == "a red striped midi dress, studio photograph\n"
    printed = capsys.readouterr().out
    assert "a red striped midi dress" in printed and "\x1b" not in printed and "\x07" not in printed
