"""Retrieval recall by item id and zero-shot scores, on hand-made embeddings."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
from helpers.ranks import end_rank, start_ranks

from trendgen.model.metrics import RetrievalRecall, ZeroShotScores, recall_at_k, zero_shot_predictions

E = torch.eye(4)


def test_recall_at_k_counts_a_query_once_when_any_relevant_entry_is_in_its_top_k():
    queries = torch.stack([E[0], E[1], E[2]])
    gallery = torch.stack([E[0], 0.9 * E[1] + 0.1 * E[2], E[2] + 0.5 * E[3] + 0.3 * E[1], E[3]])
    hits = {(0, 0), (1, 2)}  # (query, gallery) pairs that count; query 2 has none
    # query 0 finds its hit first; query 1's best match is gallery 1 and its hit (gallery 2) comes second
    recall = recall_at_k(
        queries,
        gallery,
        lambda rows, ranked: torch.tensor(
            [[(int(q), int(g)) in hits for g in r] for q, r in zip(rows, ranked, strict=True)]
        ),
        ks=(1, 2, 4),
    )
    assert recall == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 4: pytest.approx(2 / 3)}


def test_every_caption_of_an_item_counts_as_a_hit():
    metric = RetrievalRecall(ks=(1,))
    # item 7 has two images with different captions (0, 1); item 8 has caption 2
    images = torch.stack([E[0], E[1], E[2] + 0.1 * E[0]])
    texts = torch.stack([E[1], E[0], E[3] + 0.1 * E[0]])  # item 7's captions point at each other's picture
    metric.update(images, texts, item_ids=torch.tensor([7, 7, 8]), caption_ids=torch.tensor([0, 1, 2]))
    result = metric.compute()
    # images 0 and 1 retrieve the other caption of their own item first: hits; image 2's own caption is far
    # off and its nearest caption belongs to item 7: a miss. The same holds for the texts.
    assert result["i2t_R@1"].item() == pytest.approx(2 / 3)
    assert result["t2i_R@1"].item() == pytest.approx(2 / 3)
    assert result["n_images"].item() == 3


def test_a_caption_shared_by_many_items_is_a_hit_for_each_of_them():
    """Fashion-MNIST style: every shirt has the caption "a photo of a shirt"."""
    metric = RetrievalRecall(ks=(1, 2))
    images = torch.stack([E[0], E[0] + 0.1 * E[1], E[1] + 0.6 * E[0]])
    texts = torch.stack([E[0], E[0], E[1]])  # items 0 and 1: caption 5; item 2: caption 6
    metric.update(images, texts, item_ids=torch.tensor([0, 1, 2]), caption_ids=torch.tensor([5, 5, 6]))
    result = metric.compute()
    # the image of item 2 lies nearer caption 6 than caption 5: all three images find their caption first
    assert result["i2t_R@1"].item() == 1.0
    # two distinct texts: caption 5's best image is item 0 (a hit); caption 6's best is item 2 (a hit)
    assert result["t2i_R@1"].item() == 1.0


def test_a_wrong_neighbour_is_a_miss_and_duplicate_samples_count_once():
    metric = RetrievalRecall(ks=(1, 5))
    images = torch.stack([E[0], E[1], E[2]])
    texts = torch.stack([E[1], E[0], E[2]])  # items 0 and 1 swapped their captions
    ids = torch.tensor([0, 1, 2])
    metric.update(images, texts, item_ids=ids, caption_ids=ids, sample_ids=ids)
    metric.update(images[2:], texts[2:], item_ids=ids[2:], caption_ids=ids[2:], sample_ids=ids[2:])  # DDP pad
    result = metric.compute()
    assert result["n_images"].item() == 3
    assert result["i2t_R@1"].item() == pytest.approx(1 / 3)
    assert result["t2i_R@1"].item() == pytest.approx(1 / 3)
    assert "i2t_R@5" not in result and "t2i_R@5" not in result  # 3 entries: R@5 is 1 by construction
    assert result["recall_mean"].item() == pytest.approx(1 / 3)


def test_recall_is_reported_only_where_k_is_smaller_than_the_gallery():
    """Fashion-MNIST's shape: 10 class captions, 3 images each; class 0's images lie nearer caption 1."""
    eye = torch.eye(10)
    classes = torch.arange(10).repeat_interleave(3)
    images = eye[classes].clone()
    images[:3] = eye[1] + 0.5 * eye[0]  # caption 0 only second: a miss at R@1, a hit at R@5
    metric = RetrievalRecall(ks=(1, 5, 10))
    metric.update(images, eye[classes], item_ids=torch.arange(30), caption_ids=classes)
    result = metric.compute()
    assert "i2t_R@10" not in result  # the image->text gallery is the 10 captions: R@10 would be 1 always
    assert result["i2t_R@1"].item() == pytest.approx(27 / 30) and result["i2t_R@5"].item() == 1.0
    assert all(result[f"t2i_R@{k}"].item() == 1.0 for k in (1, 5, 10))  # 30 images: every k is reported
    assert result["recall_mean"].item() == pytest.approx((0.9 + 1 + 1 + 1 + 1) / 5)


def test_zero_shot_accuracy_and_weighted_f1():
    prompts = torch.stack([E[0], E[1], E[2]])
    images = torch.stack([E[0], E[0], E[1], E[2] + 0.1 * E[0], E[0] + 0.2 * E[1]])
    predictions = zero_shot_predictions(images, prompts)
    assert predictions.tolist() == [0, 0, 1, 2, 0]
    truth = torch.tensor([0, 0, 1, 2, 1])
    metric = ZeroShotScores(num_classes=3)
    metric.update(predictions, truth, sample_ids=torch.arange(5))
    metric.update(predictions[:2], truth[:2], sample_ids=torch.arange(2))  # DDP padding repeats
    scores = metric.compute()
    assert scores["zero_shot_accuracy"].item() == pytest.approx(0.8)
    # F1 per class: 0 -> 2/2.5=0.8 (p=2/3, r=1), 1 -> 2/3 (p=1, r=1/2), 2 -> 1; weighted by support 2, 2, 1
    assert scores["zero_shot_weighted_f1"].item() == pytest.approx((2 * 0.8 + 2 * 2 / 3 + 1) / 5)


# ---- the same scores from 2 gloo ranks, padded like Lightning's DistributedSampler


def _scored_rows() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return {
        "images": torch.randn(11, 8, generator=gen),
        "texts": torch.randn(11, 8, generator=gen),
        "items": torch.tensor([0, 0, 1, 2, 3, 4, 5, 5, 6, 7, 8]),
        "captions": torch.tensor([0, 1, 2, 2, 3, 4, 5, 6, 2, 7, 3]),
        "categories": torch.tensor([0, 1, 2, 2, 0, 1, 1, 2, 0, 1, 2]),
    }


def _scores(rows: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, float]:
    retrieval, zero_shot = RetrievalRecall(), ZeroShotScores(num_classes=3)
    prompts = torch.randn(3, 8, generator=torch.Generator().manual_seed(4))
    for part in index.split(4):  # batches of 4
        r = {k: v[part] for k, v in rows.items()}
        retrieval.update(r["images"], r["texts"], r["items"], r["captions"], part)
        zero_shot.update(zero_shot_predictions(r["images"], prompts), r["categories"], part)
    return {k: float(v) for k, v in {**retrieval.compute(), **zero_shot.compute()}.items()}


def _rank_scores(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=120))
    try:
        index = torch.arange(12) % 11  # 11 rows padded to 12 (row 0 again), then split like the sampler
        torch.save(_scores(_scored_rows(), index[rank::2]), f"{out}/rank{rank}.pt")
    finally:
        dist.barrier()
    end_rank()  # see tests/helpers/ranks.py


def test_two_ranks_score_the_whole_split_once(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start_ranks(_rank_scores, (port, str(tmp_path)), nprocs=2)
    single = _scores(_scored_rows(), torch.arange(11))
    assert single["n_images"] == 11
    for rank in range(2):
        assert torch.load(tmp_path / f"rank{rank}.pt") == pytest.approx(single)
