"""The global contrastive loss: against a plain reference, and 2 gloo ranks against 1 process."""

from __future__ import annotations

import math
import os
import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from helpers.ranks import end_rank, start_ranks
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from transformers import CLIPModel

from trendgen.config import ClipGeometry
from trendgen.model.build import random_clip
from trendgen.model.loss import ContrastiveLoss
from trendgen.model.metrics import batch_features

torch.set_num_threads(1)


def reference_loss(images: torch.Tensor, texts: torch.Tensor, scale: float, caption_ids: list[int]) -> float:
    """CLIP's symmetric loss written out row by row; positives = every column with the row's caption."""
    n = len(caption_ids)
    total = 0.0
    for queries, keys in ((images, texts), (texts, images)):
        for i in range(n):
            logits = [scale * float(queries[i] @ keys[j]) for j in range(n)]
            log_norm = math.log(sum(math.exp(v) for v in logits))
            positives = [j for j in range(n) if caption_ids[j] == caption_ids[i]]
            total += -sum(logits[j] - log_norm for j in positives) / len(positives)
    return total / (2 * n)


def features(n: int, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    images = F.normalize(torch.randn(n, dim, generator=gen, dtype=torch.float64), dim=-1)
    texts = F.normalize(torch.randn(n, dim, generator=gen, dtype=torch.float64), dim=-1)
    return images, texts


def test_unique_captions_match_the_plain_clip_loss():
    images, texts = features(6)
    ids = torch.arange(6)
    loss = ContrastiveLoss(multi_positive=True)(images, texts, torch.tensor(10.0), ids)
    assert loss.item() == pytest.approx(reference_loss(images, texts, 10.0, ids.tolist()), rel=1e-6)
    one_hot = ContrastiveLoss(multi_positive=False)(images, texts, torch.tensor(10.0), ids)
    assert one_hot.item() == pytest.approx(loss.item(), rel=1e-6)


def test_shared_captions_are_positives_for_each_other():
    images, texts = features(7, seed=1)
    ids = [0, 1, 0, 2, 1, 0, 3]
    loss = ContrastiveLoss(multi_positive=True)(images, texts, torch.tensor(14.0), torch.tensor(ids))
    assert loss.item() == pytest.approx(reference_loss(images, texts, 14.0, ids), rel=1e-6)


def test_which_of_two_identical_captions_an_image_pairs_with_does_not_matter():
    """Twin items share a caption: swapping their texts leaves the multi-positive loss unchanged only."""
    images, texts = features(5, seed=2)
    ids = torch.tensor([0, 0, 1, 2, 3])
    swapped = texts[[1, 0, 2, 3, 4]]
    scale = torch.tensor(20.0)
    multi, plain = ContrastiveLoss(multi_positive=True), ContrastiveLoss(multi_positive=False)
    assert multi(images, swapped, scale, ids).item() == pytest.approx(multi(images, texts, scale, ids).item())
    assert plain(images, swapped, scale, ids).item() != pytest.approx(plain(images, texts, scale, ids).item())


# ---- 2 gloo ranks against 1 process

GLOBAL_BATCH = 8
CAPTION_IDS = [0, 1, 2, 0, 3, 1, 0, 4]  # positives straddle the two ranks' halves


class PairEncoder(nn.Module):
    """The part of the model DDP wraps: normalised image and text features and the temperature."""

    def __init__(self, clip: CLIPModel) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, batch):
        images, texts = batch_features(self.clip, batch)  # what ClipFineTuner.training_step encodes
        return F.normalize(images, dim=-1), F.normalize(texts, dim=-1), self.clip.logit_scale.exp()


def tiny_clip() -> CLIPModel:
    torch.manual_seed(0)
    geometry = ClipGeometry(
        image_size=16, patch_size=8, vision_hidden_size=32, vision_layers=2, vision_heads=2,
        vision_intermediate_size=64, text_hidden_size=32, text_layers=2, text_heads=2,
        text_intermediate_size=64, projection_dim=16, max_text_length=8,
    )  # fmt: skip
    return random_clip(geometry, vocab_size=40)


def global_batch() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.tensor(CAPTION_IDS)
    input_ids = torch.randint(2, 40, (5, 8), generator=gen)[ids]  # one token row per caption id
    input_ids[:, 0], input_ids[:, 6:] = 0, 1  # BOS ... EOS + padding
    attention_mask = torch.ones_like(input_ids)
    attention_mask[:, 7] = 0
    return {
        "pixel_values": torch.randn(GLOBAL_BATCH, 3, 16, 16, generator=gen),
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "caption_ids": ids,
    }


def loss_and_grads(encoder: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    images, texts, scale = encoder(batch)
    loss = ContrastiveLoss(multi_positive=True)(images, texts, scale, batch["caption_ids"])
    loss.backward()
    module = encoder.module if isinstance(encoder, DistributedDataParallel) else encoder
    grads = {name: p.grad.detach().clone() for name, p in module.named_parameters() if p.grad is not None}
    return loss.detach(), grads


# rows per rank; "unequal": a rank lost images to skipping; "empty": rank 1 lost every image of its batch
SPLITS = {"equal": [4, 4], "unequal": [5, 3], "empty": [8, 0]}


def _rank_main(rank: int, world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=120))
    try:
        batch = global_batch()
        for split, sizes in SPLITS.items():
            start = sum(sizes[:rank])
            local = {k: v[start : start + sizes[rank]] for k, v in batch.items()}
            encoder = DistributedDataParallel(PairEncoder(tiny_clip()))
            loss, grads = loss_and_grads(encoder, local)  # DDP averages the gradients over ranks
            torch.save({"loss": loss, "rows": sizes[rank], "grads": grads}, f"{out_dir}/{split}{rank}.pt")
    finally:
        dist.barrier()
    end_rank()  # no destroy_process_group(), no normal exit: see tests/helpers/ranks.py


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict[str, list[dict]]:
    out = tmp_path_factory.mktemp("ranks")
    start_ranks(_rank_main, (2, _free_port(), str(out)), nprocs=2)  # forkserver: see helpers/ranks.py
    return {split: [torch.load(out / f"{split}{r}.pt") for r in range(2)] for split in SPLITS}


def assert_grad_close(got: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """Equal up to float32 sums taken in another order: an embedding's gradient adds up many rows, so its
    rounding scales with its largest entries (1e-6 of them), not with each entry."""
    atol = 1e-6 * max(1.0, expected.abs().max().item())
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=atol, msg=name)


def test_two_ranks_give_the_loss_and_gradients_of_one_process(two_ranks):
    single_loss, single_grads = loss_and_grads(PairEncoder(tiny_clip()), global_batch())
    ranks = two_ranks["equal"]

    mean_loss = sum(r["loss"] for r in ranks) / 2
    assert mean_loss.item() == pytest.approx(single_loss.item(), rel=1e-5)
    for r in ranks:  # the rank losses differ (each scores its own rows) ...
        assert r["loss"].item() != pytest.approx(single_loss.item(), rel=1e-4)
    assert set(ranks[0]["grads"]) == set(single_grads)
    for name, grad in single_grads.items():  # ... but every rank ends with the single-process gradient
        for r in ranks:
            assert_grad_close(r["grads"][name], grad, name)


@pytest.mark.parametrize("split", ["unequal", "empty"])
def test_ranks_with_unequal_rows_give_the_loss_and_gradients_of_their_rows_in_one_process(two_ranks, split):
    """5 + 3 rows, or 8 + none (rank 1's batch lost every image): neither hangs, and DDP's mean is exactly
    one process on the rows there are: the empty rank's zero-row step adds nothing, not even a halving."""
    single_loss, single_grads = loss_and_grads(PairEncoder(tiny_clip()), global_batch())
    ranks = two_ranks[split]
    assert (sum(r["loss"] for r in ranks) / 2).item() == pytest.approx(single_loss.item(), rel=1e-5)
    if split == "empty":
        assert ranks[1]["loss"].item() == 0.0
    for name, grad in single_grads.items():
        for r in ranks:
            assert_grad_close(r["grads"][name], grad, name)
