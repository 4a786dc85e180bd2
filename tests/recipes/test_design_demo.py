"""The offline demo end to end: `trendgen-train experiment=demo` (a short real training run), a
generator on its text tower (`trendgen-train-generator experiment=demo_generator`), then `trendgen-design
experiment=demo` on the synthetic trending set with a planted look (red striped dresses), drawn by that
generator. The trend found is the planted look, and its garment, colour and pattern lead the ranked captions.
The slow variant trains the generator for the demo's full 4 minutes and checks its designs are red dresses."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.apps import run_app
from helpers.design import REPO
from PIL import Image

BIN = Path(sys.executable).parent


def run(entrypoint: str, args: list[str], tmp: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_API_KEY": "", "TRENDGEN_ROOT": str(REPO), "OMP_NUM_THREADS": "2"}
    result = run_app([BIN / entrypoint, *args], env=env, cwd=tmp, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def run_demo(tmp_path: Path, generator_args: list[str]) -> tuple[Path, dict]:
    common = [f"paths.log_dir={tmp_path / 'runs'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    train_dir, generator_dir, design_dir = tmp_path / "train", tmp_path / "generator", tmp_path / "design"
    run("trendgen-train", ["experiment=demo", *common, f"hydra.run.dir={train_dir}"], tmp_path, timeout=800)
    generator = [
        "experiment=demo_generator",
        *common,
        f"hydra.run.dir={generator_dir}",
        f"diffusion.text_encoder={train_dir / 'model'}",
        *generator_args,
    ]
    run("trendgen-train-generator", generator, tmp_path, timeout=800)
    design_args = [
        "experiment=demo",
        *common,
        f"hydra.run.dir={design_dir}",
        f"model.name_or_path={train_dir / 'model'}",
        f"generator.name_or_path={generator_dir / 'generator'}",
    ]
    result = run("trendgen-design", design_args, tmp_path, timeout=600)
    assert f"report: {design_dir / 'report.html'}" in result.stdout
    return design_dir, json.loads((design_dir / "trend.json").read_text())


@pytest.mark.slow  # the whole demo chain, 800 CLIP steps: about 130 s (the wheel test runs its plumbing)
@pytest.mark.timeout(900)
def test_demo_finds_and_names_the_planted_look(tmp_path):
    design_dir, trend = run_demo(tmp_path, ["trainer.max_time=null", "trainer.max_steps=20"])
    assert trend["prompt"]["source"] == "template"  # offline: no OPENAI_API_KEY
    assert trend["prompt"]["generator_text"] == "a red striped dress"  # in the words the generator learnt
    assert len(trend["designs"]) == 4 and (design_dir / "prompt.txt").is_file()

    # The target is the planted look: its exemplars are red striped dresses, and it grew since the baseline.
    looks = tmp_path / "cache" / "demo" / "trend_images"
    planted = {row["path"] for row in csv.DictReader((looks / "looks.csv").open()) if row["planted"] == "1"}
    target = trend["clusters"][trend["target_cluster"]]
    assert all(Path(p).name in planted for p in target["exemplars"])
    assert target["shares"][-1] > target["shares"][0] and target["growth"]["label"] == "emerging"

    # ... and the ranked captions name it: garment, colour and pattern lead their facets.
    assert trend["look"]["text"] == "a red striped dress"
    facets = trend["facets"]
    assert "dress" in facets["garment"][0]["text"], facets["garment"]
    assert "red" in facets["colour"][0]["text"], facets["colour"]
    assert "striped" in facets["pattern"][0]["text"], facets["pattern"]


def outside_judges(n: int = 3000):
    """Two scikit-learn classifiers (garment, colour) on the demo data's own labels, at the generator's 16 px:
    a judge of the designs that is not trendgen's CLIP."""
    from hydra import compose, initialize_config_dir
    from sklearn.linear_model import LogisticRegression

    from trendgen.config import CONF_DIR, register_configs
    from trendgen.data import build_dataset
    from trendgen.data.synthetic import COLORS, GARMENTS

    register_configs()
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train_generator", overrides=["experiment=demo_generator", "diffusion.text_encoder=x"])
    dataset = build_dataset(cfg.data, "train")
    rows = range(min(n, len(dataset)))
    x = np.stack([pixels(dataset[i]["image"]) for i in rows])
    looks = [dataset.captions[i] for i in rows]
    garment = [GARMENTS[dataset.category_ids[i]] for i in rows]
    colour = [next(k for k in COLORS if f" {k} " in f" {c} ") for c in looks]
    return (
        LogisticRegression(max_iter=500).fit(x, garment),
        LogisticRegression(max_iter=500).fit(x, colour),
    )


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize((16, 16), Image.BICUBIC), dtype=np.float32).ravel() / 255


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_full_demo_draws_red_dresses(tmp_path):
    _design_dir, trend = run_demo(tmp_path, [])
    garment_judge, colour_judge = outside_judges()
    designs = np.stack([pixels(Image.open(d["path"])) for d in trend["designs"]])
    garments, colours = garment_judge.predict(designs), colour_judge.predict(designs)
    red_dresses = sum(g == "dress" and c == "red" for g, c in zip(garments, colours, strict=True))
    assert red_dresses >= 3, list(zip(garments, colours, strict=True))
