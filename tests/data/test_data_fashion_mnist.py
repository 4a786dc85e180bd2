"""Fashion-MNIST from IDX .gz files: written here in the IDX format, and the Debian package's real files."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from trendgen.config import FashionMnistDataConfig
from trendgen.data import build_dataset
from trendgen.data.fashion_mnist import CLASSES, VAL_SIZE
from trendgen.errors import TrendgenError


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x800 | array.ndim  # unsigned bytes, then the number of dimensions
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_mnist(root: Path, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """IDX files whose image i is filled with the value 10 * label + (i % 7), so pixels reveal alignment."""
    root.mkdir(parents=True, exist_ok=True)
    labels = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        y = (np.arange(n) * 7 + (part == "t10k")) % 10
        x = np.broadcast_to((10 * y + np.arange(n) % 7)[:, None, None], (n, 28, 28))
        _write_idx(root / f"{part}-images-idx3-ubyte.gz", x)
        _write_idx(root / f"{part}-labels-idx1-ubyte.gz", y)
        labels[part] = y
    return labels["train"], labels["t10k"]


def _cfg(root: Path | str) -> FashionMnistDataConfig:
    return FashionMnistDataConfig(name="fashion_mnist", root=str(root), templates=["a photo of a {category}"])


def test_splits_captions_and_pixels(tmp_path: Path) -> None:
    train_y, test_y = write_fashion_mnist(tmp_path, VAL_SIZE + 12, 9)
    train, val, test = (build_dataset(_cfg(tmp_path), s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (12, VAL_SIZE, 9)
    assert train.category_ids == train_y[:12].tolist()
    assert val.category_ids == train_y[12:].tolist()  # val: the last 5,000 training images, never test
    assert test.category_ids == test_y.tolist()
    assert train.captions[3] == f"a photo of a {CLASSES[train_y[3]]}"
    assert train.categories == list(CLASSES) and test.category_prompts()[9] == "a photo of a ankle boot"
    assert len(set(train.item_ids) | set(val.item_ids) | set(test.item_ids)) == 12 + VAL_SIZE + 9
    for dataset, labels, offset in ((train, train_y, 0), (val, train_y, 12), (test, test_y, 0)):
        sample = dataset[2]
        image = np.asarray(sample["image"])
        assert sample["image"].mode == "RGB" and image.shape == (28, 28, 3)
        assert (image == 10 * labels[offset + 2] + (offset + 2) % 7).all()


def test_missing_files_say_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(TrendgenError, match="apt-get install dataset-fashion-mnist"):
        build_dataset(_cfg(tmp_path / "empty"), "train")


def test_corrupt_files_are_refused_by_name(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path, VAL_SIZE + 2, 3)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    _write_idx(labels, np.zeros((3, 2)))  # a 2-d array where labels (1-d) belong
    with pytest.raises(TrendgenError, match=r"t10k-labels-idx1-ubyte\.gz: not an IDX file"):
        build_dataset(_cfg(tmp_path), "test")
    labels.write_bytes(b"not gzip")
    with pytest.raises(TrendgenError, match=r"t10k-labels-idx1-ubyte\.gz: not a readable gzip"):
        build_dataset(_cfg(tmp_path), "test")


def test_debian_package_files(fashion_mnist_root: Path) -> None:
    test = build_dataset(_cfg(fashion_mnist_root), "test")
    assert len(test) == 10_000
    assert Counter(test.category_ids) == dict.fromkeys(range(10), 1000)
    assert len(build_dataset(_cfg(fashion_mnist_root), "train")) == 55_000
    assert len(build_dataset(_cfg(fashion_mnist_root), "val")) == VAL_SIZE
    image = np.asarray(test[0]["image"])
    assert image.shape == (28, 28, 3) and image.max() > 100  # a real garment, not an empty frame


@pytest.mark.parametrize(("required", "outcome", "rc"), [("1", "1 error", 1), ("", "1 skipped", 0)])
def test_missing_debian_files_fail_ci_loudly(tmp_path: Path, required: str, outcome: str, rc: int) -> None:
    """With TRENDGEN_REQUIRE_FASHION_MNIST=1 (.ci/run) a missing data set fails the test that needs it."""
    env = {
        **os.environ,
        "TRENDGEN_TEST_FASHION_MNIST_ROOT": str(tmp_path),
        "TRENDGEN_REQUIRE_FASHION_MNIST": required,
    }
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"{__file__}::test_debian_package_files",
    ]
    result = subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).parent, check=False, timeout=120
    )
    assert result.returncode == rc and outcome in result.stdout, result.stdout[-2000:]
    assert "apt-get install dataset-fashion-mnist" in result.stdout
