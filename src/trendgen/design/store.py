"""Design stages and their artifacts, keyed by what produced them, so an unchanged stage is reused.

A `Stage` declares, beside its code, the stages whose artifacts it reads (`inputs`), what else its key covers
(`settings`: its own config and outside inputs such as model folders or image files), how it runs and how its
artifacts load. Its key is a hash of the package version, its settings and the *content* of its inputs'
artifacts, so a stage whose upstream wrote something new (a prompt from the LLM instead of the fallback
template) runs again even when the upstream's own key did not change.

Every stage writes its files into a fresh folder that then replaces `<output_dir>/<stage>/` whole, with a
`manifest.json` holding its key and the digests of the files' bytes. A later run whose key matches reuses the
files once their bytes check out; a stage whose manifest is missing, holds another key or whose files changed
runs again. With a store (`design.store`), finished stages are also kept by key as immutable,
content-addressed objects (see `StageDir`), so a fresh run dir reuses work done in an earlier one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trendgen import __version__
from trendgen.files import (
    UnsafeName,
    copy_file,
    replace_dir,
    safe_name,
    sha256_file,
    temp_sibling,
    write_json,
)
from trendgen.identity import stable_hash

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
OBJECTS = "objects"


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
    """One stage's folder in the run dir, its key, and the store entry of that key.

    The run folder is only ever replaced whole: a stage writes into a fresh temporary folder (`prepare`) and
    `commit` swaps it in. A store entry is a manifest, `<store>/<stage>/<key>.json`, naming each file by the
    sha256 of its bytes; the bytes are immutable objects, `<store>/objects/<ab>/<sha256>`, written under a
    temporary name and renamed, so an entry is replaced atomically and never points at half a file. Reuse
    checks every file first (in the run folder: unchanged size, time and inode since the commit, else the
    digest; in the store: the digest, once, then a marker of the object's stat); a damaged entry is dropped
    with a warning and the stage runs again. A restored run folder holds read-only links to the immutable
    objects, and every run writes a fresh folder, so nothing one run writes is seen by another.
    """

    name: str
    path: Path
    key: str
    store: Path | None = None

    @property
    def entry(self) -> Path | None:
        return None if self.store is None else self.store / self.name / f"{self.key}.json"

    def read_manifest(self) -> dict[str, Any] | None:
        return _read_json(self.path / MANIFEST)

    def content(self) -> str:
        """The digest of the artifacts a fresh (or just committed) stage holds."""
        return str((self.read_manifest() or {})["content"])

    def is_fresh(self) -> bool:
        """True when the run dir holds this stage's artifacts for this key, whole (maybe restored from the
        store just now); False when the stage must run."""
        manifest = self.read_manifest()
        if manifest is not None and manifest.get("key") == self.key and _intact(self.path, manifest):
            return bool(manifest.get("reusable", True))
        return self._restore_from_store()

    def prepare(self) -> Path:
        """A fresh, empty folder for the stage to write into (committed, or removed, by `commit`)."""
        folder = temp_sibling(self.path, "partial")
        folder.mkdir(parents=True)
        return folder

    def commit(self, folder: Path, files: Iterable[str], info: Mapping[str, Any] | None = None) -> None:
        """Record the stage written into `folder` as done and swap it in as the run's stage folder; the
        manifest names its key, files and their digests. Then keep it in the store (when reusable)."""
        try:
            names = sorted({safe_name(n, f"stage {self.name}") for n in files})
            missing = [n for n in names if not (folder / n).is_file()]
            if missing:
                raise RuntimeError(f"stage {self.name} did not write {missing}")
            manifest = {
                "stage": self.name,
                "key": self.key,
                "version": __version__,
                "content": artifacts_digest(folder, names),
                "files": names,
                "digests": {n: sha256_file(folder / n) for n in names},
                "created": time.time(),
                **(info or {}),
            }
            manifest["stats"] = {n: _stat(folder / n) for n in names}  # a rename keeps them
            write_json(folder / MANIFEST, manifest, indent=2)
            replace_dir(folder, self.path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if manifest.get("reusable", True):
            self._save_to_store(manifest)

    def _save_to_store(self, manifest: dict[str, Any]) -> None:
        entry = self.entry
        if entry is None:
            return
        try:  # the store is an optimisation: never fail the run for it
            for name, digest in manifest["digests"].items():
                obj = _object(self.store, digest)
                if not _verified(obj, digest):  # a missing or damaged object is written anew
                    copy_file(self.path / name, obj)
                    obj.chmod(0o444)
                    _mark_verified(obj)
            entry_manifest = {k: v for k, v in manifest.items() if k != "stats"}
            write_json(entry, entry_manifest, indent=2)
        except OSError as err:
            log.warning("design.store: could not keep stage %s: %s", self.name, err)

    def _restore_from_store(self) -> bool:
        entry = self.entry
        manifest = _read_json(entry) if entry is not None else None
        if manifest is None:
            return False
        folder = temp_sibling(self.path, "partial")
        try:
            if manifest.get("key") != self.key or not isinstance(manifest.get("digests"), dict):
                raise ValueError("the entry is not this stage's")
            folder.mkdir(parents=True)
            stats = {}
            for name, digest in manifest["digests"].items():
                obj = _object(self.store, str(digest))
                if not _verified(obj, str(digest)):
                    obj.unlink()  # an object whose bytes are not its name is of no use to anyone
                    raise ValueError(f"{name} does not match its digest")
                dst = folder / safe_name(name, f"design.store entry {entry}")
                _link_read_only(obj, dst)
                stats[name] = _stat(dst)
            write_json(folder / MANIFEST, {**manifest, "stats": stats}, indent=2)
            replace_dir(folder, self.path)
            return True
        except (OSError, ValueError, UnsafeName) as err:
            log.warning("design.store: dropped the damaged entry %s (%s); the stage runs again", entry, err)
            with contextlib.suppress(OSError):
                entry.unlink()
            return False
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _object(store: Path | None, digest: str) -> Path:
    if store is None or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return store / OBJECTS / digest[:2] / digest


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _intact(folder: Path, manifest: Mapping[str, Any]) -> bool:
    """The manifest's files are all there, inside the folder, with the bytes it recorded: unchanged since the
    commit by size, modification time and inode, or else by the digest of their bytes."""
    try:
        names = [safe_name(n) for n in manifest.get("files", [])]
        stats = manifest.get("stats") or {}
        if names and all(stats.get(n) == _stat(folder / n) for n in names):
            return True
        return artifacts_digest(folder, names) == manifest.get("content")
    except (OSError, UnsafeName):
        return False


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _verified(obj: Path, digest: str) -> bool:
    """The object holds the bytes its name says: checked once in full, then by its marker's stat."""
    if not obj.is_file():
        return False
    marker = obj.with_name(obj.name + ".ok")
    with contextlib.suppress(OSError, ValueError):
        if json.loads(marker.read_text()) == _stat(obj):
            return True
    if sha256_file(obj) != digest:
        return False
    _mark_verified(obj)
    return True


def _mark_verified(obj: Path) -> None:
    with contextlib.suppress(OSError):
        write_json(obj.with_name(obj.name + ".ok"), _stat(obj), indent=None)


def _link_read_only(obj: Path, dst: Path) -> None:
    """A read-only hard link to an immutable object (a copy where links fail); nothing writes through it."""
    try:
        os.link(obj, dst)
    except OSError:
        copy_file(obj, dst)
        dst.chmod(0o444)
