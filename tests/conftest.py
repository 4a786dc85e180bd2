"""Shared pytest fixtures."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from scale_support import VENV_BIN, LocalSweep, SlurmCluster, run_local_sweep, slurm_problem

# ----------------------------------------------------------------------------------------------------
# SLURM: the one-node cluster that scripts/slurm_local.sh starts (and .ci/run starts before `make test`).
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The local one-node SLURM; skips when absent or down, unless TRENDGEN_REQUIRE_SLURM=1 (then fails)."""
    problem = slurm_problem()
    if problem is not None:
        message = f"local SLURM unavailable ({problem}); start it with `sudo bash scripts/slurm_local.sh`"
        if os.environ.get("TRENDGEN_REQUIRE_SLURM") == "1":
            pytest.fail(message + " [TRENDGEN_REQUIRE_SLURM=1]", pytrace=False)
        pytest.skip(message)
    line = subprocess.run(["sinfo", "-h", "-o", "%P|%c"], capture_output=True, text=True, timeout=15)
    partition, cpus = line.stdout.splitlines()[0].split("|")
    cluster = SlurmCluster(partition=partition.rstrip("*"), cpus=int(cpus.rstrip("+")))
    yield cluster
    cluster.cancel_unfinished()


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    """The directory of the project's venv entrypoints (trendgen-train, python, torchrun)."""
    return VENV_BIN


# ----------------------------------------------------------------------------------------------------
# Sweeps: one real 2-point multirun (Hydra's basic launcher), shared by the sweep, W&B and compare tests.
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def local_sweep(tmp_path_factory: pytest.TempPathFactory) -> LocalSweep:
    """`trendgen-train -m` over two learning rates (basic launcher), logging to CSV and W&B offline."""
    return run_local_sweep(tmp_path_factory.mktemp("local_sweep"))
