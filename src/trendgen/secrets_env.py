"""The secrets trendgen reads: from the environment only, never written to a file, a log or a W&B config."""

from __future__ import annotations

import os
from typing import Any

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


def public_config(cfg: Any) -> dict[str, Any]:
    """The resolved config minus secrets: keys naming a key/token/secret, values holding an env secret."""
    from omegaconf import OmegaConf

    secrets = secret_values()

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: scrub(v) for k, v in node.items() if not any(m in str(k).lower() for m in SECRET_MARKERS)
            }
        if isinstance(node, list):
            return [scrub(v) for v in node]
        if isinstance(node, str) and any(s in node for s in secrets):
            return REDACTED
        return node

    return scrub(OmegaConf.to_container(cfg, resolve=True))
