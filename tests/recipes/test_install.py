"""A wheel installed outside the checkout runs every entrypoint: the config tree and the caption bank ship
inside the package. The wheel is built from a copy of the checkout (pyproject, README, src, conf), installed
with `pip install --target` into a folder put first on PYTHONPATH; every run starts from a cwd outside both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SMALL_DATA = [
    "data.size=32",
    "data.val_size=16",
    "data.test_size=16",
    "data.batch_size=16",
    "data.num_workers=0",
]


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


def copy_checkout(source: Path) -> Path:
    """What a build reads from the checkout, copied (a build writes build/ and *.egg-info beside it)."""
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("src", "conf"):  # symlinks kept: src/trendgen/conf -> ../../conf, as in a clone
        shutil.copytree(REPO / name, source / name, symlinks=True, ignore=ignore)
    return source


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built wheel of this checkout, installed into its own folder (console scripts in site/bin)."""
    root = tmp_path_factory.mktemp("wheel")
    source = copy_checkout(root / "checkout")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(source)])
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (root / "dist").glob("trendgen-*.whl")
    installed = _run([*pip, "install", "--no-deps", "--target", str(root / "site"), str(wheel)])
    assert installed.returncode == 0, installed.stderr[-3000:]
    return root / "site"


def run_installed(site: Path, cwd: Path, *cmd: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`cmd` from `cwd` with only the installed package importable as trendgen (no TRENDGEN_ROOT)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "TRENDGEN_"))}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1", OPENAI_API_KEY="", WANDB_SILENT="true")
    cwd.mkdir(parents=True, exist_ok=True)
    result = _run(list(cmd), cwd=cwd, env=env, timeout=timeout)
    assert result.returncode == 0, f"{cmd[:2]} failed:\n{result.stderr[-4000:]}"
    return result


def config_dir_of(run_dir: Path) -> Path:
    """The primary config dir Hydra composed the run from (.hydra/hydra.yaml)."""
    hydra = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]
    (main,) = [s for s in hydra["runtime"]["config_sources"] if s["provider"] == "main"]
    return Path(main["path"])


def test_the_wheel_ships_the_config_tree_and_the_bank(site):
    package = site / "trendgen"
    shipped = {p.relative_to(package / "conf") for p in (package / "conf").rglob("*.yaml")}
    source = {p.relative_to(REPO / "conf") for p in (REPO / "conf").rglob("*.yaml")}
    assert shipped == source
    assert not (package / "conf").is_symlink()
    assert (package / "conf" / "captions" / "bank.yaml").read_bytes() == (
        REPO / "conf" / "captions" / "bank.yaml"
    ).read_bytes()


def train_demo(site: Path, work: Path, common: list[str]) -> Path:
    """`python -m trendgen.cli.train experiment=demo` for 2 steps; the run dir (runs/demo/train/latest)."""
    run_installed(
        site, work, sys.executable, "-m", "trendgen.cli.train", "experiment=demo", *common, *SMALL_DATA,
        "trainer.max_steps=2",
    )  # fmt: skip
    train_dir = (work / "runs" / "demo" / "train" / "latest").resolve()
    assert (train_dir / "model" / "model.safetensors").is_file()
    assert config_dir_of(train_dir) == site / "trendgen" / "conf"
    return train_dir


def design_demo(site: Path, work: Path, common: list[str], *extra: str) -> dict:
    """`trendgen-design experiment=demo` on a small synthetic trending set; its trend.json."""
    design_dir = work / "design"
    design = [
        "experiment=demo", *common, f"hydra.run.dir={design_dir}", "trend.synthetic.n=24",
        "trend.synthetic.baseline_n=24", "trend.synthetic.px=32", "trend.clusters=2", "trend.n_init=1",
        "trend.num_workers=0", *extra,
    ]  # fmt: skip
    result = run_installed(site, work, str(site / "bin" / "trendgen-design"), *design)
    assert f"report: {design_dir / 'report.html'}" in result.stdout
    captions = json.loads((design_dir / "describe" / "captions.json").read_text())
    assert Path(captions["bank"]) == site / "trendgen" / "conf" / "captions" / "bank.yaml"
    assert config_dir_of(design_dir) == site / "trendgen" / "conf"
    return json.loads((design_dir / "trend.json").read_text())


def test_every_entrypoint_runs_from_the_wheel_outside_the_checkout(site, tmp_path):
    work = tmp_path / "elsewhere"
    where = run_installed(site, work, sys.executable, "-c", "import trendgen; print(trendgen.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(site)
    common = [f"paths.log_dir={work / 'runs'}", f"paths.cache_dir={work / 'cache'}"]
    train_demo(site, work, common)
    # the design pipeline finds the model the demo trained (runs/demo/train/latest) and ranks the shipped bank
    trend = design_demo(site, work, common, "generator=none")
    assert trend["prompt"]["source"] == "template" and trend["look"]["text"]

    bin_dir = site / "bin"
    apps = {"trendgen-eval": "mode=clip", "trendgen-train-generator": "experiment=demo_generator"}
    for app, override in apps.items():  # each composes its config from the package
        composed = run_installed(
            site, work, str(bin_dir / app), override, *common, "--cfg=job", "--resolve", "--package=paths"
        )
        assert f"log_dir: {work / 'runs'}" in composed.stdout
    sweep = work / "runs" / "demo" / "train"
    table = run_installed(site, work, str(bin_dir / "trendgen-compare"), str(sweep))
    assert "finished" in table.stdout and "`experiment=demo`" in table.stdout


@pytest.mark.slow
def test_the_demo_chain_draws_designs_from_the_wheel(site, tmp_path):
    """The demo, shortened: CLIP, a generator on its text tower, a design run drawing with that generator."""
    work = tmp_path / "elsewhere"
    common = [f"paths.log_dir={work / 'runs'}", f"paths.cache_dir={work / 'cache'}"]
    train_demo(site, work, common)
    generator = [
        "experiment=demo_generator", *common, *SMALL_DATA, "trainer.max_time=null", "trainer.max_steps=2",
        "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1", "sampling.samples_per_prompt=1",
        "sampling.steps=2",
    ]  # fmt: skip
    run_installed(site, work, str(site / "bin" / "trendgen-train-generator"), *generator)
    generator_dir = work / "runs" / "demo" / "train_generator" / "latest" / "generator"
    assert (generator_dir / "model_index.json").is_file()
    trend = design_demo(site, work, common, "generator.num_images=1", "generator.steps=2")
    assert len(trend["designs"]) == 1 and Path(trend["designs"][0]["path"]).is_file()


def test_the_sdist_carries_the_config_tree_as_files(tmp_path):
    """An sdist (and so a wheel built from it, or a container install) holds the tree, not a dangling link."""
    source = copy_checkout(tmp_path / "checkout")
    build = f"import setuptools.build_meta as b; print(b.build_sdist({str(tmp_path / 'dist')!r}))"
    built = _run([sys.executable, "-c", build], cwd=source)
    assert built.returncode == 0, built.stderr[-3000:]
    with tarfile.open(tmp_path / "dist" / built.stdout.split()[-1]) as sdist:
        members = {m.name.split("/", 1)[1]: m for m in sdist.getmembers() if "/" in m.name}
    bank = members["src/trendgen/conf/captions/bank.yaml"]
    assert bank.isfile() and bank.size == (REPO / "conf" / "captions" / "bank.yaml").stat().st_size
    assert "src/trendgen/conf/experiment/demo.yaml" in members
