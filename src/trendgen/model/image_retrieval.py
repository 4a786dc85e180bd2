"""Query→gallery image retrieval by item id, as fashion retrieval benchmarks (DeepFashion In-shop) report it.

Each query image ranks the gallery images by cosine similarity of their image embeddings; recall@k is the
share of queries with an image of the same item among their top k gallery images. Queries never retrieve
themselves (they are not in the gallery). As for text retrieval, R@k is reported only for k smaller than the
gallery.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from trendgen.model.metrics import RECALL_KS, first_occurrence, recall_at_k


class QueryGalleryRecall(Metric):
    """`q2g_R@k` over every image seen since the last reset; rows flagged `is_query` are the queries."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, ks: Sequence[int] = RECALL_KS, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.ks = tuple(ks)
        for name in ("image_embeds", "item_ids", "is_query", "sample_ids"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, image_embeds: Tensor, item_ids: Tensor, is_query: Tensor, sample_ids: Tensor) -> None:
        """One batch; `sample_ids` (dataset rows) drop rows seen twice (DDP padding)."""
        self.image_embeds.append(image_embeds.detach().float())
        self.item_ids.append(item_ids.long())
        self.is_query.append(is_query.bool())
        self.sample_ids.append(sample_ids.long())

    def compute(self) -> dict[str, Tensor]:
        if len(self.image_embeds) == 0:
            return {}
        samples = dim_zero_cat(self.sample_ids)
        unique, inverse = torch.unique(samples, return_inverse=True)
        keep = first_occurrence(inverse, unique.numel())
        images, items = dim_zero_cat(self.image_embeds)[keep], dim_zero_cat(self.item_ids)[keep]
        query = dim_zero_cat(self.is_query)[keep]
        gallery_items = items[~query]
        query_items = items[query]
        if query_items.numel() == 0 or gallery_items.numel() == 0:
            return {}

        def same_item(rows: Tensor, ranked: Tensor) -> Tensor:
            return gallery_items[ranked] == query_items[rows, None]

        ks = [k for k in self.ks if k < gallery_items.numel()]
        if not ks:
            return {}
        recall = recall_at_k(images[query], images[~query], same_item, ks)
        return {f"q2g_R@{k}": torch.tensor(v) for k, v in recall.items()}
