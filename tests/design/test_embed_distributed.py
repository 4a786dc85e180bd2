"""The embed stage on 2 ranks (Lightning predict, gloo on CPU): whole parts per rank, collected in file order,
the 1-process embeddings; parts a killed run left on disk are not embedded again. (Both ranks working
from scratch, through trendgen-design under torchrun and srun: tests/test_design_ranks.py.)"""

from __future__ import annotations

import numpy as np
from helpers.design import make_tiny_clip
from helpers.ranks import process_context
from PIL import Image

from trendgen.design.embed import embed_resumable
from trendgen.design.embed_distributed import embed_files_distributed
from trendgen.design.embed_parts import PartStore
from trendgen.inference.clip_forward import embed_files
from trendgen.model.build import load_saved


def two_ranks() -> dict:
    """Lightning's multiprocessing DDP (as `ddp_spawn`: the model pickled to each rank) from the preloaded
    forkserver of helpers/ranks.py, where each spawned rank re-imported torch and trendgen."""
    from pytorch_lightning.strategies import DDPStrategy

    process_context()  # the forkserver's preload is set before Lightning starts it
    strategy = DDPStrategy(start_method="forkserver")
    return {"batch_size": 2, "num_workers": 0, "accelerator": "cpu", "devices": 2, "strategy": strategy}


def test_two_ranks_embed_only_the_parts_a_killed_run_left_and_collect_in_file_order(tmp_path):
    model, _, image_processor = load_saved(make_tiny_clip(tmp_path / "clip"))
    paths = []
    for i in range(11):
        path = tmp_path / f"look{i:02d}.png"
        Image.new("RGB", (40, 40), (20 * i, 255 - 20 * i, 7 * i)).save(path)
        paths.append(path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    paths.insert(4, tmp_path / "broken.png")

    expected, used, skipped = embed_files(model, image_processor, paths, batch_size=2, num_workers=0)
    store = PartStore.for_job(tmp_path / "parts", "key", part_size=2, n=len(paths))  # 6 parts of 1 batch
    embed_resumable(model, image_processor, paths, store, batch_size=2, num_workers=0)  # one process
    for part in (1, 3, 4):
        store.path(part).unlink()  # as if that run had been killed before these were saved
    kept = {p: store.path(p).stat().st_mtime_ns for p in (0, 2, 5)}
    assert store.todo() == [1, 3, 4]  # rank 0 takes parts 1 and 4, rank 1 part 3

    got, got_used, got_skipped = embed_files_distributed(model, image_processor, paths, store, **two_ranks())
    assert {p: store.path(p).stat().st_mtime_ns for p in (0, 2, 5)} == kept  # the saved parts were reused
    assert store.todo() == []
    assert got_used == used == [i for i in range(12) if i != 4]
    assert [i for i, _ in got_skipped] == [i for i, _ in skipped] == [4]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_parts_of_another_job_are_dropped(tmp_path):
    first = PartStore.for_job(tmp_path / "parts", "key-a", part_size=4, n=10)
    first.save(0, [{"indices": [0, 1], "features": None, "skipped": [(2, "bad"), (3, "bad")]}])
    assert PartStore.for_job(tmp_path / "parts", "key-a", part_size=4, n=10).todo() == [1, 2]
    assert PartStore.for_job(tmp_path / "parts", "key-b", part_size=4, n=10).todo() == [0, 1, 2]
