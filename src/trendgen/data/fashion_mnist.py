"""Fashion-MNIST from its IDX `.gz` files (Debian: `apt-get install dataset-fashion-mnist`).

The four files are read once into numpy arrays (about 55 MB); each image becomes a 28x28 RGB PIL image only
when a DataLoader worker asks for it. Splits: train is the first 55,000 training images, val the last 5,000
(so validation never sees the test set), test the 10,000 test images.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from trendgen.config import DataConfig
from trendgen.data.base import CaptionDataset, render_caption, require_templates
from trendgen.errors import TrendgenError

CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
VAL_SIZE = 5000
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IMAGES_MAGIC, _LABELS_MAGIC = 0x803, 0x801
_ARRAYS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


class ArrayImages:
    """Picklable loader: row index -> 28x28 greyscale image as RGB."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __call__(self, index: int) -> tuple[Image.Image, None]:
        return Image.fromarray(self.images[index]).convert("RGB"), None


def build(cfg: DataConfig, split: str) -> CaptionDataset:
    """The Fashion-MNIST split (train / val / test) from the IDX files in `cfg.root`."""
    if split not in ("train", "val", "test"):
        raise TrendgenError(f"Fashion-MNIST has splits train, val, test, not {split!r}")
    templates = require_templates(cfg)
    images, labels = read_idx_pair(
        Path(cfg.root or DEBIAN_ROOT).expanduser(), "test" if split == "test" else "train"
    )
    if split == "test":
        rows, id_offset = np.arange(len(labels)), 60000
    else:
        if len(labels) <= VAL_SIZE:
            raise TrendgenError(
                f"the Fashion-MNIST training file has {len(labels)} images, too few for a val split"
            )
        cut = len(labels) - VAL_SIZE
        rows, id_offset = (np.arange(cut) if split == "train" else np.arange(cut, len(labels))), 0
    template_ids = np.random.default_rng([cfg.seed, 7]).integers(len(templates), size=len(labels))
    return CaptionDataset(
        name="fashion_mnist",
        split=split,
        sources=rows.tolist(),
        captions=[render_caption(templates[template_ids[r]], category=CLASSES[labels[r]]) for r in rows],
        item_ids=(rows + id_offset).tolist(),
        category_ids=labels[rows].tolist(),
        categories=list(CLASSES),
        category_template=cfg.category_template,
        load=ArrayImages(images),
    )


def read_idx_pair(root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(images [N, 28, 28] uint8, labels [N] int64) of `part` (train or t10k), read once per process."""
    image_file, label_file = (root / name for name in _FILES[part])
    missing = [str(p) for p in (image_file, label_file) if not p.is_file()]
    if missing:
        raise TrendgenError(
            f"Fashion-MNIST files not found: {', '.join(missing)}. Install them with "
            f"`sudo apt-get install dataset-fashion-mnist` (they land in {DEBIAN_ROOT}) or set data.root "
            "to a folder holding the four IDX .gz files"
        )
    key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in (image_file, label_file))
    if key not in _ARRAYS:
        images = _read_idx(image_file, _IMAGES_MAGIC, dims=3)
        labels = _read_idx(label_file, _LABELS_MAGIC, dims=1).astype(np.int64)
        if len(images) != len(labels):
            raise TrendgenError(
                f"{image_file} holds {len(images)} images but {label_file} {len(labels)} labels"
            )
        if labels.size and labels.max() >= len(CLASSES):
            raise TrendgenError(f"{label_file}: label {labels.max()} is not a Fashion-MNIST class (0..9)")
        _ARRAYS[key] = (images, labels)
    return _ARRAYS[key]


def _read_idx(path: Path, magic: int, dims: int) -> np.ndarray:
    """An IDX array of unsigned bytes: big-endian magic, one big-endian size per dimension, then the data."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise TrendgenError(f"{path}: not a readable gzip file ({err})") from None
    header = 4 + 4 * dims
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        raise TrendgenError(
            f"{path}: not an IDX file of {dims}-d unsigned bytes (magic {magic:#06x} expected)"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if len(data) - header != int(np.prod(shape)):
        raise TrendgenError(
            f"{path}: header announces shape {shape} but the file holds {len(data) - header} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
