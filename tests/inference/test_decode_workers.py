"""`trend.num_workers=auto`: DataLoader workers decode photos unless the forwards' threads take every core."""

from __future__ import annotations

import os

import pytest
import torch

from trendgen.errors import TrendgenError
from trendgen.inference.clip_forward import (
    DECODE_BOUND_RATE,
    decode_workers,
    forward_threads,
    intra_op_threads,
)

CPU = torch.device("cpu")


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_auto_decodes_between_forwards_when_the_threads_take_every_core(threads):
    cores = len(os.sched_getaffinity(0))
    threads(cores)
    assert decode_workers("auto", CPU) == 0
    if cores > 1:
        threads(cores - 1)  # a core is free: workers decode beside the forwards
        assert decode_workers("auto", CPU) == 2
    assert decode_workers("auto", torch.device("cuda")) == 2  # the forwards run on the GPU


def test_auto_decodes_in_workers_when_the_tower_outruns_decoding(threads):
    """A tower faster than decoding (the tiny geometry) waits on the photos: workers decode them even with
    every core taken; a slow tower (ViT-B/32) keeps decoding between forwards. The rate is asked for only
    where it decides."""
    threads(len(os.sched_getaffinity(0)))
    assert decode_workers("auto", CPU, lambda: 6700.0) == 2
    assert decode_workers("auto", CPU, lambda: 35.0) == 0
    assert decode_workers("auto", CPU, lambda: DECODE_BOUND_RATE) == 0

    def not_asked() -> float:
        raise AssertionError("measured where it does not decide")

    assert decode_workers("auto", torch.device("cuda"), not_asked) == 2
    assert decode_workers(1, CPU, not_asked) == 1


@pytest.mark.parametrize(("setting", "count"), [(0, 0), (3, 3), ("1", 1), (" 4 ", 4)])
def test_a_count_is_taken_as_it_is(setting, count):
    assert decode_workers(setting, CPU) == count


@pytest.mark.parametrize("setting", ["two", -1, "1.5", 2.5, None])
def test_anything_else_is_refused_clearly(setting):
    with pytest.raises(TrendgenError, match=r"trend.num_workers must be auto or a count \(0, 1, \.\.\.\)"):
        decode_workers(setting, CPU)


def test_the_forwards_leave_the_workers_their_cores_only_where_decoding_is_the_work(threads):
    """2 decode workers beside forwards on every core: a tower that outruns decoding (the tiny geometry)
    runs on the cores the workers leave, at least one; a forward-bound tower (ViT-B/32), a GPU, no workers
    or cores to spare leave the threads alone."""
    cores = len(os.sched_getaffinity(0))
    threads(cores)
    assert forward_threads(2, CPU, lambda: 6700.0) == max(1, cores - 2)
    assert forward_threads(2, CPU, lambda: 35.0) is None
    assert forward_threads(2, torch.device("cuda"), lambda: 6700.0) is None
    assert forward_threads(0, CPU, lambda: 6700.0) is None
    threads(1)
    if cores >= 3:
        assert forward_threads(2, CPU, lambda: 6700.0) is None  # 1 thread + 2 workers fit


def test_intra_op_threads_are_set_inside_the_block_and_restored(threads):
    threads(2)
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with intra_op_threads(None):
        assert torch.get_num_threads() == 2
