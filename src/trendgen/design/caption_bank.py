"""The caption bank: a YAML file mapping facet -> captions (`captions.bank`), read and checked.

Kept free of heavy imports so that a bad bank is reported at once.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from trendgen.errors import TrendgenError, first_line


def resolve_bank_path(bank: str | Path) -> Path:
    """The bank file; a relative path missing from the cwd is also looked up beside the shipped config tree.

    So `conf/captions/bank.yaml` names the shipped bank from any cwd, in a checkout or an installed package.
    """
    path = Path(str(bank)).expanduser()
    if not path.is_file() and not path.is_absolute():
        from trendgen.config import CONF_DIR

        candidate = Path(CONF_DIR).parent / path
        if candidate.is_file():
            return candidate
    if not path.is_file():
        raise TrendgenError(f"captions.bank: no such caption bank file: {path}")
    return path


def load_bank(bank: str | Path) -> dict[str, list[str]]:
    """facet -> captions, in file order, each caption once (its first facet wins)."""
    path = resolve_bank_path(bank)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise TrendgenError(f"captions.bank: cannot read {path}: {first_line(err)}") from None
    if not isinstance(raw, dict) or not raw:
        raise TrendgenError(f"captions.bank: {path} must map each facet to a list of captions")
    seen: set[str] = set()
    facets: dict[str, list[str]] = {}
    for facet, captions in raw.items():
        if not isinstance(captions, list) or not all(isinstance(c, str) and c.strip() for c in captions):
            raise TrendgenError(
                f"captions.bank: facet {facet!r} in {path} must be a list of non-empty strings"
            )
        kept = []
        for caption in (c.strip() for c in captions):
            if caption.lower() not in seen:
                seen.add(caption.lower())
                kept.append(caption)
        if kept:
            facets[str(facet)] = kept
    return facets


def flatten(bank: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """(texts, facet of each text) in bank order."""
    texts = [c for captions in bank.values() for c in captions]
    facets = [f for f, captions in bank.items() for _ in captions]
    return texts, facets
