"""Design stages and their artifacts, keyed by what produced them, so an unchanged stage is reused.

A `Stage` declares, beside its code, the stages whose artifacts it reads (`inputs`), what else its key covers
(`settings`: its own config and outside inputs such as model folders or image files), how it runs and how its
artifacts load. Its key is a hash of the package version, its settings and the *content* of its inputs'
artifacts, so a stage whose upstream wrote something new (a prompt from the LLM instead of the fallback
template) runs again even when the upstream's own key did not change.

Every stage writes its files into `<output_dir>/<stage>/` and, last, a `manifest.json` holding its key and a
digest of the files' bytes. A later run whose key matches reuses the files; a stage whose manifest is missing
or holds another key runs again. With a store (`design.store`), finished stages are also hard-linked (copied
where links fail) into `<store>/<stage>/<key>/`, so a fresh run dir reuses work done in an earlier one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trendgen import __version__
from trendgen.identity import stable_hash

MANIFEST = "manifest.json"


def artifacts_digest(folder: Path, names: Iterable[str]) -> str:
    """sha256 over the names and bytes of a stage's files: what a downstream stage's key is built from."""
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(name.encode() + b"\0")
        with open(folder / name, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Stage:
    """One design stage: what it reads, what its key covers, how it runs and how its artifacts load.

    `settings(ctx)` and `run(ctx, folder)` take the run's `StageContext` (`trendgen.design.context`: the
    config, the models, identities and the typed results of the stages before); `run` hands each pure stage
    function its own config node and its inputs' results, and returns the files it wrote (relative to
    `folder`) and extra manifest fields; `load(folder)` returns the stage's typed result.
    """

    name: str
    inputs: tuple[str, ...]
    settings: Callable[[Any], Any]
    run: Callable[[Any, Path], tuple[list[str], dict[str, Any]]]
    load: Callable[[Path], Any]

    def key(self, design_run: Any, contents: Mapping[str, str]) -> str:
        """The package version, this stage's settings and the content digest of each input's artifacts."""
        upstream = {name: contents[name] for name in self.inputs}
        return stable_hash(self.name, __version__, self.settings(design_run), upstream)


@dataclass(frozen=True)
class RecordStage:
    """A stage that runs last, on the run's whole record (trend.json) and its inputs' results, every run: its
    output (the report) shows this run's timings and reuse, so it is never stored or reused."""

    name: str
    inputs: tuple[str, ...]
    run: Callable[[dict[str, Any], Mapping[str, Any], Path], list[str]]


@dataclass
class StageDir:
    """One stage's folder in the run dir and its key."""

    name: str
    path: Path
    key: str
    store: Path | None = None

    @property
    def stored(self) -> Path | None:
        return None if self.store is None else self.store / self.name / self.key

    def read_manifest(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.path / MANIFEST).read_text())
        except (OSError, ValueError):
            return None

    def content(self) -> str:
        """The digest of the artifacts a fresh (or just committed) stage holds."""
        manifest = self.read_manifest() or {}
        return manifest.get("content") or artifacts_digest(self.path, manifest.get("files", []))

    def is_fresh(self) -> bool:
        """True when the run dir holds this stage's artifacts for this key (maybe restored from the store)."""
        manifest = self.read_manifest()
        if manifest is not None and manifest.get("key") == self.key and self._files_present(manifest):
            return bool(manifest.get("reusable", True))
        return self._restore_from_store()

    def _files_present(self, manifest: Mapping[str, Any]) -> bool:
        return all((self.path / name).is_file() for name in manifest.get("files", []))

    def _restore_from_store(self) -> bool:
        stored = self.stored
        if stored is None or not (stored / MANIFEST).is_file():
            return False
        try:
            manifest = json.loads((stored / MANIFEST).read_text())
        except (OSError, ValueError):
            return False
        if manifest.get("key") != self.key or not all((stored / f).is_file() for f in manifest["files"]):
            return False
        self.path.mkdir(parents=True, exist_ok=True)
        for name in [*manifest["files"], MANIFEST]:
            link_or_copy(stored / name, self.path / name)
        return True

    def prepare(self) -> Path:
        """Create the stage folder for a fresh run; a stale manifest goes first, so a crash leaves no lie."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / MANIFEST).unlink(missing_ok=True)
        return self.path

    def commit(self, files: Iterable[str], info: Mapping[str, Any] | None = None) -> None:
        """Record the stage as done: the manifest names its key and files (relative to the stage folder)."""
        names = sorted(set(files))
        missing = [n for n in names if not (self.path / n).is_file()]
        if missing:
            raise RuntimeError(f"stage {self.name} did not write {missing}")
        manifest = {
            "stage": self.name,
            "key": self.key,
            "version": __version__,
            "content": artifacts_digest(self.path, names),
            "files": names,
            "created": time.time(),
            **(info or {}),
        }
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, self.path / MANIFEST)
        if manifest.get("reusable", True):
            self._save_to_store(names)

    def _save_to_store(self, names: list[str]) -> None:
        stored = self.stored
        if stored is None:
            return
        partial = stored.with_name(stored.name + f".partial-{os.getpid()}")
        try:
            partial.mkdir(parents=True, exist_ok=True)
            for name in [*names, MANIFEST]:
                (partial / name).parent.mkdir(parents=True, exist_ok=True)
                link_or_copy(self.path / name, partial / name)
            if stored.exists():
                shutil.rmtree(stored)
            os.replace(partial, stored)
        except OSError:
            shutil.rmtree(
                partial, ignore_errors=True
            )  # the store is an optimisation: never fail the run for it


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link of `src` at `dst` (a copy where links fail); an existing `dst` is replaced."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() and dst.samefile(src):
        return
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
