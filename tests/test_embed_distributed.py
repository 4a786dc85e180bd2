"""The embed stage on 2 ranks (Lightning predict, gloo on CPU): whole parts per rank, collected in file order,
the 1-process embeddings; parts already on disk are not embedded again."""

from __future__ import annotations

import numpy as np
from design_support import make_tiny_clip
from PIL import Image

from trendgen.clip_inference import embed_files
from trendgen.embed_distributed import embed_files_distributed
from trendgen.embed_parts import PartStore
from trendgen.model.build import load_saved

TWO_RANKS = {"batch_size": 2, "num_workers": 0, "accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}


def test_two_ranks_write_parts_collected_in_file_order_and_resume(tmp_path):
    model, _, image_processor = load_saved(make_tiny_clip(tmp_path / "clip"))
    paths = []
    for i in range(11):
        path = tmp_path / f"look{i:02d}.png"
        Image.new("RGB", (40, 40), (20 * i, 255 - 20 * i, 7 * i)).save(path)
        paths.append(path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    paths.insert(4, tmp_path / "broken.png")

    expected, used, skipped = embed_files(model, image_processor, paths, batch_size=2, num_workers=0)
    store = PartStore.for_job(tmp_path / "parts", "key", part_size=4, n=len(paths))  # 3 parts of 2 batches
    got, got_used, got_skipped = embed_files_distributed(model, image_processor, paths, store, **TWO_RANKS)
    assert sorted(p.name for p in store.folder.glob("part-*.npz")) == [f"part-{p:06d}.npz" for p in range(3)]
    assert got_used == used == [i for i in range(12) if i != 4]
    assert [i for i, _ in got_skipped] == [i for i, _ in skipped] == [4]
    np.testing.assert_allclose(got, expected, atol=1e-5)

    kept = {p: store.path(p).stat().st_mtime_ns for p in (0, 2)}
    store.path(1).unlink()  # as if the run had been killed before part 1 was saved
    assert store.todo() == [1]  # one part for two ranks: rank 1 has nothing to do and must not hang
    again, again_used, _ = embed_files_distributed(model, image_processor, paths, store, **TWO_RANKS)
    assert {p: store.path(p).stat().st_mtime_ns for p in (0, 2)} == kept  # the saved parts were reused
    assert again_used == used
    np.testing.assert_allclose(again, expected, atol=1e-5)


def test_parts_of_another_job_are_dropped(tmp_path):
    first = PartStore.for_job(tmp_path / "parts", "key-a", part_size=4, n=10)
    first.save(0, [{"indices": [0, 1], "features": None, "skipped": [(2, "bad"), (3, "bad")]}])
    assert PartStore.for_job(tmp_path / "parts", "key-a", part_size=4, n=10).todo() == [1, 2]
    assert PartStore.for_job(tmp_path / "parts", "key-b", part_size=4, n=10).todo() == [0, 1, 2]
