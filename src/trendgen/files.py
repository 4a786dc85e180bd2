"""Files written whole or not at all, and names that stay inside their folder.

Every output is written to a temporary name in its own directory and renamed into place (`os.replace`), so a
killed run leaves the previous file whole; a folder is swapped in the same way. Names read from a record
(a manifest, trend.json) are checked before they are joined to a folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from trendgen.errors import TrendgenError


class UnsafeName(TrendgenError):
    """A name in a record that would leave its folder (absolute, `..`, a link out)."""


def temp_sibling(path: Path, tag: str = "tmp") -> Path:
    """A fresh name beside `path` (same directory, so a rename is atomic), hidden and unique per process."""
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write `path` through: renamed into place when the block ends, removed on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_with(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write `path` atomically with `write(handle)` on a binary handle: a process killed at any moment
    leaves the previous file or the new one, whole (no fsync: power loss is the file system's business)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_with(path, lambda handle: handle.write(text.encode("utf-8")))


def write_json(path: str | Path, value: Any, indent: int | None = 1) -> Path:
    return write_text(path, json.dumps(value, indent=indent) + "\n")


def copy_file(src: str | Path, dst: str | Path) -> Path:
    """A copy of `src` at `dst` of its own (never a shared inode), written atomically."""
    with open(src, "rb") as source:
        return write_with(dst, lambda handle: shutil.copyfileobj(source, handle, 1 << 22))


def replace_dir(new: Path, path: Path) -> None:
    """Put the finished folder `new` at `path`, replacing any folder there; a reader sees one or the other."""
    for _ in range(10):
        old = temp_sibling(path, "old")
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, old)
        try:
            os.replace(new, path)
        except OSError:  # another process put its folder there between the two renames: move it aside too
            shutil.rmtree(old, ignore_errors=True)
            continue
        shutil.rmtree(old, ignore_errors=True)
        return
    raise OSError(f"could not put {new} in place at {path}")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def safe_name(name: Any, what: str = "record") -> str:
    """A relative name that stays inside its folder: no absolute path, no `..`, nothing empty."""
    text = str(name) if isinstance(name, str) else ""
    path = PurePosixPath(text)
    if not text or path.is_absolute() or ".." in path.parts or "\\" in text or text.startswith("~"):
        raise UnsafeName(f"{what}: the name {name!r} would leave its folder")
    return str(path)


def inside(folder: Path, name: Any, what: str = "record") -> Path:
    """`folder / name` for a safe name, refused when a link on the way leads out of `folder`."""
    path = folder / safe_name(name, what)
    if not path.resolve().is_relative_to(folder.resolve()):
        raise UnsafeName(f"{what}: {name!r} leads out of {folder}")
    return path
