"""Where a model comes from: a local folder or a Hugging Face hub id, and which revision of it.

One rule decides "is this a path" everywhere (the model, the generator, the LoRA base, the judge): a name that
exists on disk or starts like a path (`.`, `/`, `~`) is a folder; anything else is a hub id.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def is_local(name_or_path: str | Path) -> bool:
    """A folder on disk (or meant as one) rather than a hub id (`org/name`)."""
    text = str(name_or_path)
    return text.startswith((".", "/", "~")) or Path(text).expanduser().exists()


def resolved_revision(repo_id: str, revision: str | None = None) -> str:
    """The commit a hub id resolves to: from the local HF cache first, then the hub; else the asked name.

    A pinned commit (`model.revision=<sha>`) resolves to itself: what was drawn with it keeps its key.
    """
    from huggingface_hub import HfApi, snapshot_download

    try:  # offline: the cache's refs/<revision> names the snapshot it points at
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True)).name
    except Exception:
        pass
    try:
        sha = HfApi().model_info(repo_id, revision=revision).sha
        if sha:
            return str(sha)
    except Exception as err:  # no network or no such repo: loading it will say so
        log.debug("could not resolve %s@%s: %s", repo_id, revision, err)
    return f"unresolved:{revision or 'main'}"
