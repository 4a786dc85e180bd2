"""Which config keys name a secret (dropped from W&B configs) and which only look alike."""

from __future__ import annotations

from omegaconf import OmegaConf

from trendgen.tracking.secrets_env import names_a_secret, public_config


def test_keys_that_name_a_secret_by_a_whole_word():
    for name in ("api_key", "OPENAI_API_KEY", "hf_token", "client-secret", "password", "apikey"):
        assert names_a_secret(name), name
    for name in ("max_tokens", "monkey_patch", "sort_keys", "tokenizer", "max_text_length"):
        assert not names_a_secret(name), name


def test_public_config_keeps_max_tokens_and_drops_keys_and_env_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-marker-123")
    cfg = OmegaConf.create({"llm": {"max_tokens": 120, "api_key": "x", "base_url": "http://h/sk-marker-123"}})
    assert public_config(cfg) == {"llm": {"max_tokens": 120, "base_url": "<redacted>"}}
