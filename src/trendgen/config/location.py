"""Where the config tree lives: trendgen/conf inside the package.

In a checkout `src/trendgen/conf` is a symlink to the top-level conf/ (the single source), which wheels and
sdists copy as real files: every kind of install finds it here.
"""

from __future__ import annotations

from pathlib import Path

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def conf_path(relative: str) -> str:
    """The absolute path of a file of the shipped config tree: `${trendgen.conf:captions/bank.yaml}`."""
    return str(Path(CONF_DIR) / relative)
