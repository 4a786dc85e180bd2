"""Modules the tests import from a path: the repository's scripts/, or one file of an installed library."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_file(name: str, path: Path) -> ModuleType:
    """The Python file `path`, executed as a fresh module called `name` (not added to sys.modules)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_script(name: str) -> ModuleType:
    """`scripts/<name>.py` as a module."""
    return load_file(name, SCRIPTS / f"{name}.py")
