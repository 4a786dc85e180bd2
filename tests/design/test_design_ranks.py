"""`trendgen-design` started as several ranks (torchrun, or srun through slurm/design.sbatch): every rank
embeds its share of the images, rank 0 alone runs the later stages, and the embeddings are those of one
process, in file order."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers.design import REPO, compose_design, make_tiny_clip, write_looks
from helpers.scale import VENV_BIN, SlurmCluster, job_env

from trendgen.errors import TrendgenError
from trendgen.inference.clip_forward import embed_files
from trendgen.model.build import load_saved
from trendgen.recipes.design import join_embed_group
from trendgen.trends.periods import trend_periods

N_LOOKS = 13  # odd, plus one broken file: the ranks get unequal shares


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ranks")
    looks = write_looks(root / "looks", n=N_LOOKS)
    (looks / "broken.png").write_bytes(b"not a png")
    return {"model": make_tiny_clip(root / "model"), "looks": looks}


@pytest.fixture(scope="module")
def one_process(inputs) -> tuple[list[str], np.ndarray]:
    """The paths and embeddings the plain one-process embed loop gives."""
    trend = compose_design([f"trend.images={inputs['looks']}"]).trend
    paths = list(trend_periods(trend)[-1].files)
    model, _, image_processor = load_saved(inputs["model"])
    embeddings, used, skipped = embed_files(model, image_processor, paths, batch_size=4, num_workers=0)
    assert len(used) == N_LOOKS and len(skipped) == 1
    return [str(paths[i]) for i in used], embeddings


def design_args(inputs: dict[str, Path], tmp: Path, run_dir: Path, devices: int = 2) -> list[str]:
    return [
        f"hydra.run.dir={run_dir}",
        f"paths.cache_dir={tmp / 'cache'}",
        f"model.name_or_path={inputs['model']}",
        f"trend.images={inputs['looks']}",
        f"trend.devices={devices}",
        "trend.clusters=2",
        "trend.n_init=2",
        "trend.batch_size=4",
        "trend.num_workers=0",
        "trend.precision=32",  # compared with the fp32 one-process loop
        "design.stages=[embed,cluster]",
        "generator=none",
    ]


def torchrun_design(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(VENV_BIN / "torchrun"),
        "--standalone",
        "--nproc-per-node=2",
        str(VENV_BIN / "trendgen-design"),
    ]
    env = job_env(TRENDGEN_ROOT=str(REPO), OPENAI_API_KEY="")
    return subprocess.run([*cmd, *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=240)


def assert_rank0_wrote_the_run(run_dir: Path, one_process: tuple[list[str], np.ndarray]) -> None:
    paths, expected = one_process
    index = json.loads((run_dir / "embed" / "index.json").read_text())
    assert index["paths"] == paths  # merged back in file order
    assert [Path(s["path"]).name for s in index["skipped"]] == ["broken.png"]
    np.testing.assert_allclose(np.load(run_dir / "embed" / "embeddings.npy"), expected, atol=1e-5)
    assert not (run_dir / "embed" / "parts").exists()  # the parts are collected, then removed
    trend = json.loads((run_dir / "trend.json").read_text())
    assert trend["images"]["used"] == N_LOOKS
    assert sum(c["size"] for c in trend["clusters"]) == N_LOOKS


def test_torchrun_ranks_embed_together_then_rank0_reuses_the_stage(inputs, one_process, tmp_path):
    run_dir = tmp_path / "run"
    first = torchrun_design(design_args(inputs, tmp_path, run_dir), tmp_path)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    assert "embed group: rank 1 of 2 (TorchElasticEnvironment)" in output
    assert f"rank 1: embedded its share of {N_LOOKS + 1} files" in output
    assert output.count("trend: ") == 1  # only rank 0 runs the later stages and writes the outputs
    assert_rank0_wrote_the_run(run_dir, one_process)

    # the same run again: rank 0 reuses the embed stage and releases rank 1, which must not wait for work
    again = torchrun_design(design_args(inputs, tmp_path, run_dir), tmp_path)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-4000:]
    assert "rank 1: nothing to embed" in output
    assert json.loads((run_dir / "trend.json").read_text())["stage_status"]["embed"] == "reused"


def test_more_ranks_than_devices_is_refused_with_one_line(inputs, tmp_path):
    result = torchrun_design(design_args(inputs, tmp_path, tmp_path / "run", devices=1), tmp_path)
    assert result.returncode != 0
    assert "exitcode  : 2" in result.stderr  # torchrun's own report (its traceback) of the rank's exit code 2
    assert "trendgen/" not in result.stderr  # no traceback through trendgen's code
    errors = {line for line in result.stderr.splitlines() if line.startswith("trendgen: error:")}
    assert len(errors) == 1, result.stderr[-3000:]  # the same line from each rank that got to print it
    assert "trend.devices=1 x trend.num_nodes=1 is 1 ranks, but 2 process(es) were started" in errors.pop()


def test_several_nodes_without_a_launcher_are_refused(monkeypatch):
    for name in ("SLURM_NTASKS", "RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    trend = compose_design(["trend.images=x", "trend.devices=4", "trend.num_nodes=2"]).trend
    with pytest.raises(TrendgenError, match="srun --nodes=2 --ntasks-per-node=4"):
        join_embed_group(trend)
    assert join_embed_group(compose_design(["trend.images=x", "trend.devices=4"]).trend) is None  # ddp_spawn


@pytest.mark.slurm
def test_design_template_embeds_with_two_srun_tasks(
    slurm_cluster: SlurmCluster, inputs, one_process, tmp_path
):
    """slurm/design.sbatch itself, on one node with 2 tasks (CPU): trend.devices follows the allocation."""
    out = tmp_path / "job.out"
    layout = ["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--gpus-per-node=0", "--mem=4G"]
    args = [
        a
        for a in design_args(inputs, tmp_path, tmp_path / "unused")
        if not a.startswith(("hydra.", "trend.dev"))
    ]
    job_id = slurm_cluster.sbatch(
        REPO / "slurm" / "design.sbatch",
        tmp_path,
        *layout,
        "--time=10",
        f"--output={out}",
        script_args=(*args, f"paths.log_dir={tmp_path / 'runs'}"),
        env=job_env(TRENDGEN_ROOT=str(REPO), TRENDGEN_VENV=str(VENV_BIN.parent), OPENAI_API_KEY=""),
    )
    info = slurm_cluster.wait(job_id, timeout=240)
    log = out.read_text()
    assert info["JobState"] == "COMPLETED", log[-4000:]
    assert "embed group: rank 1 of 2 (SLURMEnvironment)" in log
    assert f"rank 1: embedded its share of {N_LOOKS + 1} files" in log
    assert log.count("trend: ") == 1
    assert_rank0_wrote_the_run(tmp_path / "runs" / "design" / "runs" / f"slurm-{job_id}", one_process)
