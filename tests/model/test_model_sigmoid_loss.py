"""SigLIP's sigmoid loss against open_clip's own `SigLipLoss`: loss and gradients, 1 process and 2 gloo ranks.

open_clip is installed without its dependencies (`make install`: its package imports torchvision, whose
wheel breaks beside this torch), so its loss.py is loaded from the installed file, not through the package.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from helpers.ranks import end_rank, start_ranks
from helpers.scripts import load_file

from trendgen.model.loss import SigmoidLoss

BATCH, WIDTH = 8, 16


def open_clip_loss_module():
    """open_clip's loss.py as installed (`open_clip_torch`), imported on its own."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("open_clip_torch is not installed: `make install` installs it (--no-deps)")
    path = Path(next(iter(spec.submodule_search_locations))) / "loss.py"
    return load_file("open_clip_loss", path)


def inputs(seed: int, rows: int = BATCH):
    """Unit features, the paper's initial temperature (10) and bias (-10), as leaves with gradients."""
    gen = torch.Generator().manual_seed(seed)
    images = F.normalize(torch.randn(rows, WIDTH, generator=gen), dim=-1).requires_grad_(True)
    texts = F.normalize(torch.randn(rows, WIDTH, generator=gen), dim=-1).requires_grad_(True)
    scale = torch.tensor(10.0, requires_grad=True)
    bias = torch.tensor(-10.0, requires_grad=True)
    return images, texts, scale, bias


def loss_and_grads(loss_fn, tensors) -> list[torch.Tensor]:
    loss = loss_fn(*tensors)
    loss.backward()
    return [loss.detach(), *(t.grad.detach().clone() for t in tensors)]


def test_one_process_equals_open_clip_siglip_loss():
    reference = open_clip_loss_module().SigLipLoss()
    expected = loss_and_grads(lambda *t: reference(*t), inputs(0))
    ids = torch.arange(BATCH)
    for multi_positive in (True, False):  # unique captions: the same targets either way
        ours = SigmoidLoss(multi_positive=multi_positive)
        got = loss_and_grads(lambda i, t, s, b, f=ours: f(i, t, s, b, ids, gather=False), inputs(0))
        for name, a, b in zip(["loss", "images", "texts", "scale", "bias"], got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


def test_repeated_captions_are_positives_and_the_bias_shifts_every_pair():
    images, texts, scale, bias = inputs(1, rows=4)
    ids = torch.tensor([0, 1, 0, 2])
    got = SigmoidLoss()(images, texts, scale, bias, ids, gather=False)
    logits = scale * images @ texts.T + bias
    labels = torch.tensor([[1, -1, 1, -1], [-1, 1, -1, -1], [1, -1, 1, -1], [-1, -1, -1, 1]]).float()
    torch.testing.assert_close(got, -F.logsigmoid(labels * logits).sum() / 4)


def _rank_main(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=120))
    try:
        reference = open_clip_loss_module().SigLipLoss(rank=rank, world_size=2)  # its ring exchange
        expected = loss_and_grads(lambda *t: reference(*t), inputs(10 + rank, rows=BATCH // 2))
        ids = torch.arange(BATCH // 2) + rank * BATCH // 2
        ours = SigmoidLoss()
        got = loss_and_grads(lambda i, t, s, b: ours(i, t, s, b, ids), inputs(10 + rank, rows=BATCH // 2))
        torch.save({"expected": expected, "got": got}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.barrier()
    end_rank()


def test_two_gloo_ranks_equal_open_clip_siglip_loss_on_each_rank(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start_ranks(_rank_main, (port, str(tmp_path)), nprocs=2)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        names = ["loss", "images", "texts", "scale", "bias"]
        for name, a, b in zip(names, result["got"], result["expected"], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=f"rank {rank}: {name}")
