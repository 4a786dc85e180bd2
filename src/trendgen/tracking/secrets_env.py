"""The secrets trendgen reads: from the environment only, never written to a file, a log or a W&B config."""

from __future__ import annotations

import os
import re
from typing import Any

OPENAI_API_KEY = "OPENAI_API_KEY"
WANDB_API_KEY = "WANDB_API_KEY"
HF_TOKEN = "HF_TOKEN"
SECRET_ENV = (OPENAI_API_KEY, WANDB_API_KEY, HF_TOKEN)
SECRET_WORDS = {
    "key",
    "apikey",
    "token",
    "secret",
    "password",
}  # a config key with one of these words is never logged
REDACTED = "<redacted>"


def names_a_secret(name: str) -> bool:
    """Whether a config key names a secret: one of its words (split at `_`, `-`, `.`) is key, token, ...

    `api_key`, `hf_token`, `client_secret` do; `max_tokens`, `monkey_patch`, `sort_keys` do not."""
    return any(word in SECRET_WORDS for word in re.split(r"[^a-z0-9]+", name.lower()))


def secret_values() -> list[str]:
    """The values of the secrets set in this environment."""
    return [os.environ[name] for name in SECRET_ENV if os.environ.get(name)]


def without_secrets(text: str) -> str:
    """`text` with the value of every secret in the environment replaced by `<redacted>`."""
    for secret in secret_values():
        text = text.replace(secret, REDACTED)
    return text


def public_config(cfg: Any) -> dict[str, Any]:
    """The resolved config minus secrets: keys naming a key/token/secret, values holding an env secret."""
    from omegaconf import OmegaConf

    secrets = secret_values()

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: scrub(v) for k, v in node.items() if not names_a_secret(str(k))}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        if isinstance(node, str) and any(s in node for s in secrets):
            return REDACTED
        return node

    return scrub(OmegaConf.to_container(cfg, resolve=True))
