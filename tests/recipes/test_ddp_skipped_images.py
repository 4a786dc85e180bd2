"""DDP on two CPU ranks (gloo) over a folder where most images are corrupt: a step in which no rank has a
usable image runs on every rank, changes nothing, and is counted; the run finishes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from helpers.apps import run_app
from helpers.scale import TINY_TRAIN, VENV_BIN, job_env
from PIL import Image


def test_steps_without_any_image_on_any_rank_are_skipped_not_fatal(tmp_path: Path) -> None:
    data = tmp_path / "looks"
    data.mkdir()
    with (data / "captions.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "caption"])
        for i in range(12):
            name = f"look_{i}.png"
            if i < 2:
                Image.new("RGB", (32, 32), (200, 30 * i, 40)).save(data / name)
            else:
                (data / name).write_bytes(b"\x89PNG\r\n\x1a\n" + b"cut short")  # a truncated download
            writer.writerow([name, f"a red striped dress number {i}"])
    overrides = [o for o in TINY_TRAIN if not o.startswith("data.")]
    cmd = [
        str(VENV_BIN / "trendgen-train"),
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        *overrides,
        "data=folder",
        f"data.root={data}",
        "data.batch_size=2",  # one image per rank and step
        "data.num_workers=0",
        "trainer.max_steps=12",
        "trainer.max_epochs=3",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    result = run_app(cmd, cwd=tmp_path, env=job_env(TRENDGEN_ROOT=str(tmp_path)), timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["global_step"] == 12
    assert metrics["train/skipped_steps"] >= 1
