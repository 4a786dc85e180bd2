"""Identities and hashes: what keys a cached result (a config subset, files, a model folder, bytes).

Stable across runs and machines: JSON with sorted keys, sha256, cut to 16 hex digits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

_MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model", ".pt")


def _to_plain(value: Any) -> Any:
    if isinstance(value, DictConfig) or OmegaConf.is_list(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def config_subset(node: Any, keys: list[str]) -> dict[str, Any]:
    """The resolved values of `keys` in a config node (what a stage's key covers of that node)."""
    plain = _to_plain(node)
    return {k: plain.get(k) for k in keys}


def stable_hash(*parts: Any, length: int = 16) -> str:
    """A short sha256 over JSON-serialised parts (dict keys sorted), stable across runs and machines."""
    text = json.dumps([_to_plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_identity(path: str | Path) -> list[Any]:
    """(absolute path, size, mtime in ns) of one file: changes whenever the file is replaced or edited."""
    try:
        st = Path(path).stat()
    except OSError:
        return [str(Path(path).absolute()), None, None]  # missing: the key changes when it appears
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


def files_identity(paths: Iterable[str | Path]) -> str:
    """One hash over the identities of many files (the inputs of a stage)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(json.dumps(file_identity(path)).encode())
    return digest.hexdigest()[:16]


def folder_identity(folder: str | Path) -> list[Any]:
    """The identity of a saved model folder: its path plus every weight, config and tokenizer file in it."""
    folder = Path(folder)
    if not folder.is_dir():
        return [str(folder)]  # a hub id: its name is all we know
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _MODEL_FILE_SUFFIXES)
    return [str(folder.resolve()), files_identity(files)]


def content_hash(path: str | Path) -> str:
    """sha256 of a file's bytes (small files such as the caption bank)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
