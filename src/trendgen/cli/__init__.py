"""Console entrypoints: each composes the Hydra config tree shipped in the package and calls one recipe."""

from __future__ import annotations

from trendgen.config.location import CONF_DIR, conf_path

__all__ = ["CONF_DIR", "conf_path"]
