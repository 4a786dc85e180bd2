"""Ranking scores of the retrieval tasks fashion papers report (Marqo's fashion evaluation): text→image and
category→product, with Recall@k, Precision@k, MRR and NDCG@10 over the whole evaluation set.

Definitions (binary relevance, cosine similarity, every gallery entry ranked):
- Recall@k: the share of a query's relevant entries among its top k (averaged over queries);
- Precision@k: the share of its top k that are relevant;
- MRR: the mean of 1 / rank of its first relevant entry;
- NDCG@10: DCG of its top 10 (1 / log2(rank + 1) per hit) over the best possible for its relevant count;
- mAP: average precision over the whole ranking (the mean of the precision at the rank of each relevant
  entry), averaged over queries: the multi-label retrieval score, where an image is relevant to several
  queries (its colour and its pattern).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["RANKING_KS", "ranking_scores"]

RANKING_KS = (1, 10)
NDCG_AT = 10


def ranking_scores(
    queries: Tensor,
    gallery: Tensor,
    relevant: Callable[[Tensor], Tensor],
    ks: tuple[int, ...] = RANKING_KS,
    chunk_size: int = 256,
) -> dict[str, float]:
    """Mean scores over `queries` ([Q, D]) ranking `gallery` ([G, D]); `relevant(rows)` is the [c, G] boolean
    relevance of the query rows `rows`. Queries without any relevant entry are left out. The first hit's rank
    counts the entries scored strictly higher (a tie goes the query's way); the rest read one sort of each
    query's gallery (equal scores keep gallery order)."""
    queries, gallery = F.normalize(queries.float().cpu(), dim=-1), F.normalize(gallery.float().cpu(), dim=-1)
    depth = min(max(*ks, NDCG_AT), gallery.shape[0])
    discounts = 1.0 / torch.log2(torch.arange(2, NDCG_AT + 2, dtype=torch.float32))[: min(NDCG_AT, depth)]
    best = torch.cat([torch.zeros(1), discounts.cumsum(0)])  # the ideal DCG of n relevant entries: best[n]
    sums: dict[str, float] = {}
    counted = 0
    for start in range(0, queries.shape[0], chunk_size):
        rows = torch.arange(start, min(start + chunk_size, queries.shape[0]))
        hits = relevant(rows)
        keep = hits.any(dim=1)
        hits, scores = hits[keep], (queries[rows] @ gallery.T)[keep]
        counted += int(keep.sum())
        n_relevant = hits.sum(dim=1).float()
        first_hit = scores.masked_fill(~hits, float("-inf")).max(dim=1).values
        rank = (scores > first_hit[:, None]).sum(dim=1) + 1
        in_order = torch.gather(hits, 1, scores.argsort(dim=1, descending=True, stable=True)).float()
        ranked = in_order[:, :depth]  # [c, depth]: the top entries' relevance
        values = {"mrr": 1.0 / rank.float()}
        for k in ks:
            found = ranked[:, :k].sum(dim=1)
            values[f"recall@{k}"] = found / n_relevant
            values[f"precision@{k}"] = found / min(k, gallery.shape[0])
        ideal = best[n_relevant.clamp(max=len(discounts)).long()]
        values[f"ndcg@{NDCG_AT}"] = (ranked[:, : len(discounts)] * discounts).sum(dim=1) / ideal
        ranks = torch.arange(1, gallery.shape[0] + 1, dtype=torch.float32)
        values["map"] = (in_order * in_order.cumsum(dim=1) / ranks).sum(dim=1) / n_relevant
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + float(value.sum())
    return {name: total / counted for name, total in sums.items()} if counted else {}
