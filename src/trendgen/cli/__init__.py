"""Console entrypoints: each composes the Hydra config tree shipped in the package and calls one recipe."""

from __future__ import annotations

from pathlib import Path

# The config tree ships inside the package as trendgen/conf. In a checkout that is a symlink to the top-level
# conf/ (the single source), which wheels and sdists copy as real files: every kind of install finds it here.
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def conf_path(relative: str) -> str:
    """The absolute path of a file of the shipped config tree: `${trendgen.conf:captions/bank.yaml}`."""
    return str(Path(CONF_DIR) / relative)
