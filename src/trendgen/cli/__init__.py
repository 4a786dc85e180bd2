"""Console entrypoints: each composes the Hydra config tree in conf/ and calls one recipe."""

from __future__ import annotations

from pathlib import Path

# Editable installs (`make install`) run from the checkout: conf/ sits beside src/.
CONF_DIR = str(Path(__file__).resolve().parents[3] / "conf")
