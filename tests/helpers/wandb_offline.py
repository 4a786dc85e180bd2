"""Offline W&B runs as the tests read them: the environment that keeps W&B offline with marker secrets, and
what one offline run wrote (run record, config, history, summary, artifacts, tables)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.scale import wandb_records

SECRETS = {
    "WANDB_API_KEY": "wandb0marker0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9",
    "OPENAI_API_KEY": "sk-marker-openai-8c1d",
    "HF_TOKEN": "hf_marker3Zq8Lw2Xv5",
}


def wandb_env(root: Path) -> dict[str, str]:
    """Offline W&B with every W&B folder under `root`, and the secrets set."""
    dirs = {
        name: str(root / name.lower()) for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR")
    }
    return {**SECRETS, **dirs, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def leaks(root: Path) -> list[tuple[str, Path]]:
    return [
        (name, path)
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink()
        for name, secret in SECRETS.items()
        if secret.encode() in path.read_bytes()
    ]


@dataclass
class OfflineRun:
    """What one offline W&B run wrote: its run record, config, history rows, summary, artifacts, files/."""

    folder: Path
    run: Any = None
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[Any] = field(default_factory=list)
    exit_code: int | None = None

    @classmethod
    def read(cls, folder: Path) -> OfflineRun:
        (log,) = folder.glob("run-*.wandb")
        found = cls(folder)
        for record in wandb_records(log):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                found.run = record.run
                found.config.update(_items(record.run.config.update))
            elif kind == "config":
                found.config.update(_items(record.config.update))
            elif kind == "history":
                found.history.append(_items(record.history.item))
            elif kind == "summary":
                found.summary.update(_items(record.summary.update))
            elif kind == "artifact":
                found.artifacts.append(record.artifact)
            elif kind == "exit":
                found.exit_code = record.exit.exit_code
        return found

    def table(self, key: str) -> dict[str, Any]:
        """A logged wandb.Table as its JSON (`files/media/table/<key>_*.table.json`)."""
        (path,) = (self.folder / "files" / "media" / "table").glob(f"{key}_*.table.json")
        return json.loads(path.read_text())

    def rows(self, key: str) -> list[dict[str, Any]]:
        table = self.table(key)
        return [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]

    def artifact(self, kind: str) -> Any:
        (found,) = [a for a in self.artifacts if a.type == kind]
        return found


def _items(updates: Any) -> dict[str, Any]:
    return {"/".join(u.nested_key) if u.nested_key else u.key: json.loads(u.value_json) for u in updates}


def offline_runs(run_dir: Path) -> list[OfflineRun]:
    return [OfflineRun.read(p) for p in sorted((run_dir / "wandb").glob("offline-run-*"))]
