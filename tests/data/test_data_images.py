"""The bad-image zoo: every kind of file a real photo folder holds becomes RGB or is skipped with a reason."""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import transformers
from PIL import Image

from trendgen.config import FolderDataConfig
from trendgen.data import build_dataset, load_rgb
from trendgen.data.datamodule import FashionDataModule
from trendgen.model.tokenizer import train_caption_tokenizer

RED = (200, 16, 16)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height (no real pixel data): a decompression bomb's first bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))


def write_zoo(folder: Path) -> dict[str, str]:
    """Write one file of each kind; returns {file name: 'ok' or the start of the expected skip reason}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    Image.new("RGB", (48, 32), RED).save(folder / "good.jpg", quality=95)
    whole = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    Image.new("RGB", (48, 32), RED).save(folder / "good.png")
    whole_png = (folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(whole_png[:-40])
    (folder / "page.jpg").write_text("<html><body>404 not found</body></html>")
    Image.new("CMYK", (40, 20), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=95)
    Image.new("RGBA", (40, 20), (0, 0, 255, 0)).save(folder / "rgba.png")
    Image.new("LA", (40, 20), (0, 0)).save(folder / "la.png")
    palette = Image.new("P", (40, 20), 0)
    palette.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    palette.paste(1, (0, 0, 20, 20))
    palette.save(folder / "palette.png", transparency=0)
    Image.fromarray(np.full((20, 40), 65535 // 2, dtype=np.uint16)).save(folder / "gray16.png")
    Image.fromarray(np.full((20, 40), 30000, dtype=np.int32)).save(folder / "int32.tif")
    rotated = Image.new("RGB", (60, 20), RED)
    exif = rotated.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    rotated.save(folder / "exif.jpg", exif=exif, quality=95)
    Image.new("RGB", (800, 600), RED).save(folder / "huge.jpg", quality=90)
    Image.new("RGB", (400, 300), RED).save(folder / "huge.png")
    _png_header_only(folder / "bomb.png", 40000, 40000)
    return {
        "zero.jpg": "empty file",
        "truncated.jpg": "truncated",
        "truncated.png": "truncated",
        "page.jpg": "not an image",
        "bomb.png": "too large",
        "good.jpg": "ok",
        "good.png": "ok",
        "cmyk.jpg": "ok",
        "rgba.png": "ok",
        "la.png": "ok",
        "palette.png": "ok",
        "gray16.png": "ok",
        "int32.tif": "ok",
        "exif.jpg": "ok",
        "huge.jpg": "ok",
        "huge.png": "ok",
    }


def test_zoo_becomes_rgb_or_a_reason(tmp_path: Path) -> None:
    expected = write_zoo(tmp_path)
    for name, outcome in expected.items():
        image, reason = load_rgb(tmp_path / name, max_pixels=20_000)
        if outcome == "ok":
            assert reason is None, name
            assert image is not None and image.mode == "RGB", name
            assert image.width * image.height <= 20_000, name
        else:
            assert image is None, name
            assert reason is not None and reason.startswith(outcome), (name, reason)


def test_zoo_conversions_keep_the_picture(tmp_path: Path) -> None:
    write_zoo(tmp_path)

    def pixel(name: str, xy: tuple[int, int] = (5, 5)) -> tuple[int, int, int]:
        image, reason = load_rgb(tmp_path / name, max_pixels=20_000)
        assert image is not None, reason
        return image.getpixel(xy)

    assert np.allclose(pixel("cmyk.jpg"), (255, 0, 0), atol=12)  # cyan-free, full magenta + yellow = red
    assert pixel("rgba.png") == (255, 255, 255)  # fully transparent blue composites to white
    assert pixel("la.png") == (255, 255, 255)
    assert pixel("palette.png", (5, 5)) == (255, 0, 0)  # opaque palette entry
    assert pixel("palette.png", (30, 5)) == (255, 255, 255)  # transparent palette entry
    assert np.allclose(pixel("gray16.png"), (127, 127, 127), atol=1)  # 16-bit mid-grey, not clipped white
    assert np.allclose(pixel("int32.tif"), (117, 117, 117), atol=1)
    upright, _ = load_rgb(tmp_path / "exif.jpg")
    assert upright is not None and upright.size == (20, 60)  # EXIF orientation applied: portrait
    big, _ = load_rgb(tmp_path / "huge.png", max_pixels=20_000)
    assert big is not None and abs(big.width / big.height - 4 / 3) < 0.05  # aspect ratio kept
    assert np.allclose(big.getpixel((10, 10)), RED, atol=2)


def test_missing_file_is_a_reason_not_an_exception(tmp_path: Path) -> None:
    image, reason = load_rgb(tmp_path / "nowhere.jpg")
    assert image is None and reason is not None and "cannot read file" in reason


@pytest.mark.timeout(120)
def test_loader_over_a_folder_with_bad_files_keeps_going(tmp_path: Path) -> None:
    expected = write_zoo(tmp_path / "photos")
    with (tmp_path / "captions.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "caption"])
        for name in expected:
            writer.writerow([f"photos/{name}", f"a photo named {name}"])
        writer.writerow(["photos/deleted.jpg", "a file that was deleted"])
    cfg = FolderDataConfig(
        name="folder", root=str(tmp_path), index=str(tmp_path / "captions.csv"), batch_size=4, num_workers=2
    )
    assert len(build_dataset(cfg, "val")) == len(expected)  # the deleted file is dropped at build time

    tokenizer = train_caption_tokenizer([f"a photo named {n}" for n in expected], vocab_size=300)
    processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    module = FashionDataModule(cfg, tokenizer, processor, max_length=16)
    module.setup("validate")
    kept, skipped = 0, []
    for batch in module.val_dataloader():
        assert batch["pixel_values"].shape[1:] == (3, 32, 32)
        assert len(batch["caption_ids"]) == batch["pixel_values"].shape[0]
        kept += batch["pixel_values"].shape[0]
        skipped += batch["skipped"]
        module.on_before_batch_transfer(batch, 0)
    bad = {name for name, outcome in expected.items() if outcome != "ok"}
    assert kept == len(expected) - len(bad)
    assert {Path(path).name for path, _ in skipped} == bad
    assert all(reason for _, reason in skipped)
    count, records = module.skipped_files()
    assert count == len(bad) + 1  # the zoo's bad files plus the missing one
    assert any(path.endswith("deleted.jpg") and "missing file" in reason for path, reason in records)


def test_a_small_file_declaring_a_huge_image_is_refused_from_its_header(tmp_path):
    """A 13,000 x 13,000 PNG of under a megabyte (a decompression bomb) is refused without decoding: in a
    fresh process, quickly and without the gigabytes a decode takes."""
    import struct
    import subprocess
    import sys
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    side = 13_000
    rows = zlib.compressobj(9)
    body = b"".join(rows.compress(b"\0" * (side + 1)) for _ in range(side)) + rows.flush()
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    assert bomb.stat().st_size < 1_000_000
    probe = (
        "import resource, time; from trendgen.data.images import load_rgb;"
        " peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024;"
        f" before, t = peak(), time.perf_counter(); image, reason = load_rgb({str(bomb)!r});"
        " print(image is None, round(time.perf_counter() - t, 2), peak() - before, reason)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120).stdout
    refused, seconds, grew_mb, reason = out.split(" ", 3)
    assert refused == "True" and "too large to decode safely" in reason, out
    assert float(seconds) < 2.0 and int(grew_mb) < 50, out  # a full decode takes 20 s and 4 GB


def test_a_photo_without_an_orientation_is_not_copied_to_apply_one(tmp_path: Path, monkeypatch) -> None:
    """exif_transpose used to return a copy of every photo (a fifth of a small PNG's decode); it now works in
    place, so a photo with no EXIF orientation is decoded and never copied (the oriented one: see above)."""
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "plain.png")
    copies = []
    original_copy = Image.Image.copy
    monkeypatch.setattr(Image.Image, "copy", lambda self: copies.append(self.size) or original_copy(self))
    image, reason = load_rgb(tmp_path / "plain.png")
    assert reason is None and image.size == (40, 30) and image.getpixel((0, 0)) == (200, 10, 10)
    assert copies == []
