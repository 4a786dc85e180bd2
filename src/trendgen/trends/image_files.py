"""Which image files a design run reads: a folder searched recursively, or a text file of paths.

Kept free of heavy imports so that a wrong path is reported at once, before torch loads.
"""

from __future__ import annotations

from pathlib import Path

from trendgen.errors import TrendgenError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif"}


def discover_images(spec: str | Path | None, what: str = "trend.images") -> list[Path]:
    """The image files named by `spec`: a folder (searched recursively) or a text file of paths (one a line).

    Relative paths in a list are relative to the list's folder. Listed paths that do not exist are kept: the
    embed stage records them as skipped.
    """
    if spec is None or str(spec).strip() == "":
        raise TrendgenError(f"{what} is not set: give a folder of images or a text file of image paths")
    root = Path(str(spec)).expanduser()
    if not root.exists():
        raise TrendgenError(f"{what}: no such file or folder: {root}")
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise TrendgenError(f"{what}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
        return files
    try:
        lines = root.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise TrendgenError(f"{what}: cannot read the list of image paths {root}: {err}") from None
    files = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line).expanduser()
            files.append(path if path.is_absolute() else root.parent / path)
    if not files:
        raise TrendgenError(f"{what}: the list {root} names no image paths")
    return files
