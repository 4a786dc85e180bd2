"""The offline demo end to end: `trendgen-train experiment=demo` (a short real training run), then
`trendgen-design experiment=demo` on the synthetic trending set with a planted look (red striped dresses).
The trend found is the planted look, and its garment, colour and pattern lead the ranked captions."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from design_support import REPO

BIN = Path(sys.executable).parent


def run(entrypoint: str, args: list[str], tmp: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_API_KEY": "", "TRENDGEN_ROOT": str(REPO), "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        [str(BIN / entrypoint), *args], capture_output=True, text=True, env=env, cwd=tmp, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.mark.timeout(900)
def test_demo_finds_and_names_the_planted_look(tmp_path):
    common = [
        "experiment=demo",
        f"paths.log_dir={tmp_path / 'runs'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    train_dir = tmp_path / "train"
    run("trendgen-train", [*common, f"hydra.run.dir={train_dir}"], tmp_path, timeout=800)
    design_dir = tmp_path / "design"
    design_args = [*common, f"hydra.run.dir={design_dir}", f"model.name_or_path={train_dir / 'model'}"]
    result = run("trendgen-design", design_args, tmp_path, timeout=600)
    assert f"report: {design_dir / 'report.html'}" in result.stdout

    trend = json.loads((design_dir / "trend.json").read_text())
    assert trend["prompt"]["source"] == "template"  # offline: no OPENAI_API_KEY
    assert len(trend["designs"]) == 2 and (design_dir / "prompt.txt").is_file()

    # The target is the planted look: its exemplars are red striped dresses, and it grew since the baseline.
    looks = tmp_path / "cache" / "demo" / "trend_images"
    planted = {row["path"] for row in csv.DictReader((looks / "looks.csv").open()) if row["planted"] == "1"}
    target = trend["clusters"][trend["target_cluster"]]
    assert all(Path(p).name in planted for p in target["exemplars"])
    assert target["share_now"] > target["share_then"]

    # ... and the ranked captions name it: garment, colour and pattern lead their facets.
    assert trend["look"]["text"] == "a red striped dress"
    facets = trend["facets"]
    assert "dress" in facets["garment"][0]["text"], facets["garment"]
    assert "red" in facets["colour"][0]["text"], facets["colour"]
    assert "striped" in facets["pattern"][0]["text"], facets["pattern"]
