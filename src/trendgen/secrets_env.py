"""The secrets trendgen reads: from the environment only, never written to a file, a log or a W&B config."""

from __future__ import annotations

import os

OPENAI_API_KEY = "OPENAI_API_KEY"
WANDB_API_KEY = "WANDB_API_KEY"
HF_TOKEN = "HF_TOKEN"
SECRET_ENV = (OPENAI_API_KEY, WANDB_API_KEY, HF_TOKEN)
SECRET_MARKERS = ("key", "token", "secret", "password")  # config keys whose values are never logged
REDACTED = "<redacted>"


def secret_values() -> list[str]:
    """The values of the secrets set in this environment."""
    return [os.environ[name] for name in SECRET_ENV if os.environ.get(name)]


def without_secrets(text: str) -> str:
    """`text` with the value of every secret in the environment replaced by `<redacted>`."""
    for secret in secret_values():
        text = text.replace(secret, REDACTED)
    return text
