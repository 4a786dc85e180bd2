"""The SLURM process-layout check, requeue ownership and checkpoint resolution, from SLURM's own variables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trendgen.errors import TrendgenError
from trendgen.training.launch import (
    check_launch_layout,
    check_slurm_layout,
    cluster_plugins,
    continues_run,
    resolve_ckpt_path,
)

SLURM_VARS = [k for k in os.environ if k.startswith(("SLURM_", "SUBMITIT_"))] + [
    "TORCHELASTIC_RUN_ID",
    "RANK",
    "GROUP_RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
]


@pytest.fixture
def slurm_env(monkeypatch: pytest.MonkeyPatch):
    """Set the variables srun gives a task (as `srun --nodes=N --ntasks-per-node=M` or `--ntasks=K` would)."""
    for name in SLURM_VARS:
        monkeypatch.delenv(name, raising=False)

    def set_layout(
        ntasks: int, nodes: int = 1, per_node: int | None = None, job_name: str = "trendgen-train"
    ):
        values = {
            "SLURM_NTASKS": ntasks,
            "SLURM_JOB_NUM_NODES": nodes,
            "SLURM_NNODES": nodes,
            "SLURM_JOB_NAME": job_name,
            "SLURM_JOB_ID": 77,
            "SLURM_PROCID": 0,
            "SLURM_LOCALID": 0,
            "SLURM_NODEID": 0,
            "SLURM_NODELIST": "vm",
        }
        monkeypatch.delenv("SLURM_NTASKS_PER_NODE", raising=False)
        if per_node is not None:
            values["SLURM_NTASKS_PER_NODE"] = per_node
        for key, value in values.items():
            monkeypatch.setenv(key, str(value))

    return set_layout


def test_matching_layout_passes(slurm_env) -> None:
    slurm_env(ntasks=8, nodes=2, per_node=4)
    check_slurm_layout({"devices": 4, "num_nodes": 2})
    slurm_env(ntasks=1, nodes=1)  # a one-task batch job
    check_slurm_layout({"devices": 1, "num_nodes": 1})


@pytest.mark.parametrize(
    ("layout", "trainer", "message"),
    [
        ({"ntasks": 2}, {"devices": 2, "num_nodes": 1}, "bare --ntasks"),
        (
            {"ntasks": 2, "per_node": 2},
            {"devices": 1, "num_nodes": 1},
            "2 tasks per node but trainer.devices=1",
        ),
        ({"ntasks": 4, "nodes": 2, "per_node": 2}, {"devices": 2, "num_nodes": 1}, "trainer.num_nodes=1"),
        (
            {"ntasks": 1, "per_node": 1},
            {"devices": 2, "num_nodes": 1},
            "1 tasks per node but trainer.devices=2",
        ),
        ({"ntasks": 1}, {"devices": 2, "num_nodes": 1}, "needs 2 processes but SLURM started 1"),
    ],
)
def test_mismatched_layout_is_refused_with_the_srun_line_to_use(slurm_env, layout, trainer, message) -> None:
    slurm_env(**layout)
    with pytest.raises(TrendgenError, match=message) as err:
        check_slurm_layout(trainer)
    assert f"srun --nodes={trainer['num_nodes']} --ntasks-per-node={trainer['devices']}" in str(err.value)
    assert "\n" not in str(err.value)


def test_no_check_outside_slurm_interactive_or_torchrun(slurm_env, monkeypatch) -> None:
    check_slurm_layout({"devices": 2, "num_nodes": 1})  # no SLURM at all
    slurm_env(ntasks=2, job_name="interactive")  # salloc + a shell: Lightning ignores SLURM
    check_slurm_layout({"devices": 4, "num_nodes": 1})
    slurm_env(ntasks=1)  # torchrun inside a one-task job: torch elastic gives the ranks
    for name, value in {"RANK": 0, "GROUP_RANK": 0, "LOCAL_RANK": 0, "LOCAL_WORLD_SIZE": 2}.items():
        monkeypatch.setenv(name, str(value))
    check_slurm_layout({"devices": 2, "num_nodes": 1})


def test_torchrun_ranks_against_the_config_are_checked_from_its_variables(slurm_env, monkeypatch) -> None:
    """`trendgen-design` runs this before its heavy imports: a wrong rank count fails in a second per rank."""
    check_launch_layout({"devices": 4, "num_nodes": 1})  # neither torchrun nor SLURM: nothing to check
    for name, value in {"RANK": 1, "GROUP_RANK": 0, "LOCAL_RANK": 1, "LOCAL_WORLD_SIZE": 2}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("WORLD_SIZE", "2")
    check_launch_layout({"devices": 2, "num_nodes": 1})
    with pytest.raises(
        TrendgenError, match=r"trend.devices=1 x trend.num_nodes=1 is 1 ranks, but 2 process"
    ) as err:
        check_launch_layout({"devices": 1, "num_nodes": 1})
    assert "torchrun --nproc-per-node=1" in str(err.value)
    monkeypatch.setenv("WORLD_SIZE", "4")  # two nodes of two
    check_launch_layout({"devices": 2, "num_nodes": 2})


def test_requeue_owner_is_submitit_inside_launcher_jobs_else_lightning(slurm_env, monkeypatch) -> None:
    from lightning_fabric.plugins.environments import SLURMEnvironment

    slurm_env(ntasks=1, per_node=1)
    assert (
        cluster_plugins({"devices": 1, "num_nodes": 1}) == []
    )  # plain sbatch: Lightning's default (SIGUSR1)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    (plugin,) = cluster_plugins({"devices": 1, "num_nodes": 1})
    assert isinstance(plugin, SLURMEnvironment) and plugin.auto_requeue is False


def test_resolve_ckpt_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert resolve_ckpt_path(None, tmp_path) is None
    assert resolve_ckpt_path("last", tmp_path) is None  # a fresh run dir: start from scratch
    assert not continues_run(None, tmp_path)
    with pytest.raises(TrendgenError, match="not a checkpoint file"):
        resolve_ckpt_path(str(tmp_path / "missing.ckpt"), tmp_path)

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resolve_ckpt_path("last", tmp_path) == "last"  # Lightning picks the newest last*.ckpt itself
    assert continues_run("last", tmp_path)
    assert resolve_ckpt_path(None, tmp_path) is None  # not a restart: a new run
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert resolve_ckpt_path(None, tmp_path) == "last"  # a requeued job resumes by itself

    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(b"y")  # Lightning's SIGUSR1 checkpoint (plain sbatch)
    assert resolve_ckpt_path(None, tmp_path) is None  # Lightning's SLURM auto-resume loads it
    assert continues_run(None, tmp_path)
    own = tmp_path / "checkpoints" / "epoch1.ckpt"
    own.write_bytes(b"z")
    assert resolve_ckpt_path(str(own), tmp_path) == str(own) and continues_run(str(own), tmp_path)
    assert not continues_run(str(own), tmp_path / "other_run")


def test_run_stamp_is_shared_by_ranks_and_requeues(slurm_env, monkeypatch) -> None:
    from trendgen.config.resolvers import run_stamp

    assert run_stamp("2025-01-01_12-00-00") == "2025-01-01_12-00-00"  # no launcher: the timestamp
    slurm_env(ntasks=2, per_node=2)
    assert run_stamp("ignored") == "slurm-77"
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    assert run_stamp("ignored") == "slurm-77"
    monkeypatch.setenv("SLURM_STEP_ID", "2")  # a later srun step of the same job
    assert run_stamp("ignored") == "slurm-77-step2"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert run_stamp("ignored") == "slurm-70_3-step2"
    slurm_env(ntasks=1, job_name="interactive")  # salloc shell: not a batch job
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
    assert run_stamp("t") == "torchrun-abc"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    assert run_stamp("t") == "t"
