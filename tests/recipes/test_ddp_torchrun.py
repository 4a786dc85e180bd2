"""trainer=ddp under torchrun: two CPU ranks (gloo) share one run dir and split the global batch."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers.scale import TINY_TRAIN, VENV_BIN, job_env


@pytest.mark.slow
def test_torchrun_two_ranks_share_one_run_dir(tmp_path: Path) -> None:
    cmd = [
        str(VENV_BIN / "torchrun"),
        "--standalone",
        "--nproc-per-node=2",
        str(VENV_BIN / "trendgen-train"),
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        *TINY_TRAIN,
    ]
    env = job_env(TRENDGEN_ROOT=str(tmp_path))
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in output
    (run_dir,) = (tmp_path / "runs" / "train" / "runs").iterdir()  # both ranks chose the same dir
    assert run_dir.name.startswith("torchrun-")
    assert (run_dir / "model" / "config.json").is_file()
    # 48 samples, global batch 8 split over 2 ranks -> 6 steps in the epoch
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == 6
