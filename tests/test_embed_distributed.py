"""The embed stage on 2 ranks (Lightning predict, gloo on CPU) gives the 1-process embeddings, in order."""

from __future__ import annotations

import numpy as np
from design_support import make_tiny_clip
from PIL import Image

from trendgen.clip_inference import embed_files
from trendgen.embed_distributed import embed_files_distributed
from trendgen.model.build import load_saved


def test_two_ranks_write_shards_merged_back_in_file_order(tmp_path):
    model, _, image_processor = load_saved(make_tiny_clip(tmp_path / "clip"))
    paths = []
    for i in range(11):  # odd: the sampler pads one rank with a repeated file
        path = tmp_path / f"look{i:02d}.png"
        Image.new("RGB", (40, 40), (20 * i, 255 - 20 * i, 7 * i)).save(path)
        paths.append(path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    paths.insert(4, tmp_path / "broken.png")

    expected, used, skipped = embed_files(model, image_processor, paths, batch_size=4, num_workers=0)
    got, got_used, got_skipped = embed_files_distributed(
        model,
        image_processor,
        paths,
        shard_dir=tmp_path / "shards",
        batch_size=4,
        num_workers=0,
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
    )
    assert sorted((tmp_path / "shards").glob("shard-*.npz")) == [
        tmp_path / "shards" / "shard-00000.npz",
        tmp_path / "shards" / "shard-00001.npz",
    ]
    assert got_used == used == [i for i in range(12) if i != 4]
    assert [i for i, _ in got_skipped] == [i for i, _ in skipped] == [4]
    np.testing.assert_allclose(got, expected, atol=1e-5)
