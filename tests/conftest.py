"""Shared pytest fixtures."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.apps import remember_environment
from helpers.scale import VENV_BIN, LocalSweep, SlurmCluster, run_local_sweep, slurm_problem


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test` runs two workers on two cores) each worker, and every subprocess it
    starts, gets one thread: two workers of two threads each oversubscribe the cores (the headline fixture
    took 266 s so against 78 s). MKL's variable too, so that helpers.scale.job_env's processes start warm
    (helpers.apps)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ["MKL_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)
    remember_environment()  # the warm app server's environment (helpers.apps), before any test changes it


# The modules that take longest on two cores (fixtures that train, SLURM jobs, torchrun ranks), longest first.
# `make test` hands each module to one xdist worker whole (`--dist loadfile`: its module fixtures are built
# once), in collection order; these go first so that the short ones even out the end.
LONG_MODULES = (
    "recipes/test_design_headline.py",
    "training/test_slurm_train.py",
    "recipes/test_generator_train.py",
    "design/test_design_ranks.py",
    "recipes/test_train.py",
    "design/test_design_cli.py",
    "recipes/test_install.py",
    "tracking/test_compare.py",
    "tracking/test_wandb_apps.py",
    "design/test_llm_openai.py",
    "design/test_design_stage_keys.py",
    "training/test_slurm_sweep.py",
)


# Modules that share a session fixture, run by one worker (each worker would build it): module -> the module
# whose worker takes it.
SHARED_WORKER = {"tests/tracking/test_compare.py": "tests/training/test_sweep_local.py"}  # local_sweep


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadfile` (as `make test` asks), with the modules of SHARED_WORKER handed out together."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ModuleScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = super()._split_scope(nodeid)
            return SHARED_WORKER.get(module, module)

    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    order = {f"tests/{module}": rank for rank, module in enumerate(LONG_MODULES)}
    # a stable sort: the other modules keep their order
    items.sort(key=lambda item: order.get(item.nodeid.partition("::")[0], len(order)))


def require_service(problem: str | None, variable: str) -> None:
    """Skip a test whose service or data set is missing (`problem`); fail instead when `variable` is 1.

    .ci/run sets TRENDGEN_REQUIRE_SLURM=1 and TRENDGEN_REQUIRE_FASHION_MNIST=1: there, what it installed must
    be there, and a test that would skip fails loudly.
    """
    if problem is None:
        return
    if os.environ.get(variable) == "1":
        pytest.fail(f"{problem} [{variable}=1]", pytrace=False)
    pytest.skip(problem)


# ----------------------------------------------------------------------------------------------------
# SLURM: the one-node cluster that scripts/slurm_local.sh starts (and .ci/run starts before `make test`).
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The local one-node SLURM; skips when absent or down, unless TRENDGEN_REQUIRE_SLURM=1 (then fails)."""
    problem = slurm_problem()
    if problem is not None:
        problem = f"local SLURM unavailable ({problem}); start it with `sudo bash scripts/slurm_local.sh`"
    require_service(problem, "TRENDGEN_REQUIRE_SLURM")
    line = subprocess.run(["sinfo", "-h", "-o", "%P|%c"], capture_output=True, text=True, timeout=15)
    partition, cpus = line.stdout.splitlines()[0].split("|")
    cluster = SlurmCluster(partition=partition.rstrip("*"), cpus=int(cpus.rstrip("+")))
    yield cluster
    cluster.cancel_unfinished()


# ----------------------------------------------------------------------------------------------------
# Fashion-MNIST: the files of Debian's dataset-fashion-mnist (.ci/run installs it).
# ----------------------------------------------------------------------------------------------------


FASHION_MNIST_FILES = [
    f"{part}-{kind}-ubyte.gz" for part in ("train", "t10k") for kind in ("images-idx3", "labels-idx1")
]


@pytest.fixture(scope="session")
def fashion_mnist_root() -> Path:
    """The Debian package's folder (or TRENDGEN_TEST_FASHION_MNIST_ROOT); skips when a file is missing, unless
    TRENDGEN_REQUIRE_FASHION_MNIST=1 (then fails)."""
    from trendgen.data.fashion_mnist import DEBIAN_ROOT

    root = Path(os.environ.get("TRENDGEN_TEST_FASHION_MNIST_ROOT") or DEBIAN_ROOT)
    missing = [name for name in FASHION_MNIST_FILES if not (root / name).is_file()]
    problem = None
    if missing:
        install = "`sudo apt-get install dataset-fashion-mnist`"
        problem = f"Fashion-MNIST missing from {root} ({', '.join(missing)}): {install}"
    require_service(problem, "TRENDGEN_REQUIRE_FASHION_MNIST")
    return root


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
