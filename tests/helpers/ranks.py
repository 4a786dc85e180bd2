"""Starting and ending the processes of a multi-process test (gloo ranks, concurrent store writers)."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from multiprocessing.context import BaseContext
from typing import Any

# What the forkserver imports once, before it forks the first process: the libraries the ranks' test modules
# load. A module missing here is imported by each process that needs it, as under spawn.
PRELOAD = (
    "torch",
    "torch.distributed",
    "pytest",
    "transformers",
    "hydra",
    "helpers.design",
    "helpers.generator",
    "trendgen.model.build",
    "trendgen.model.loss",
    "trendgen.model.metrics",
    "trendgen.generator.module",
    "trendgen.generator.parts",
    "trendgen.recipes.design",
)


def process_context() -> BaseContext:
    """multiprocessing's forkserver, preloaded: every process forks from a clean server that imported torch,
    transformers and trendgen once (under spawn each re-imported them, 5-8 s on 2 cores). Not a fork of the
    pytest process: one that earlier tests left with threads (gloo, OpenMP) can hang a forked child."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))  # no effect once this process's server runs
    return context


def start_ranks(main: Callable[..., Any], args: tuple[Any, ...], nprocs: int) -> None:
    """`torch.multiprocessing.start_processes` from the forkserver: `main(rank, *args)` in `nprocs` processes,
    joined; a rank that fails raises here."""
    import torch.multiprocessing as mp

    process_context()
    mp.start_processes(main, args=args, nprocs=nprocs, start_method="forkserver")


def end_rank() -> None:
    """End this rank at once, its results written and the other ranks met (call after the last barrier).

    No `destroy_process_group()`: with gloo, the rank hosting the store could wait in it for a peer that had
    already exited (it hung a full suite once). Nor a normal interpreter exit: gloo's threads torn down by the
    exit handlers aborted a rank now and then ("terminate called without an active exception", SIGABRT), and
    the test failed with every result written. `os._exit(0)` skips those handlers; call it only once the
    rank's work succeeded, so that an exception still ends the rank non-zero.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
