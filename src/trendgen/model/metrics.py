"""Retrieval recall and zero-shot classification for CLIP, as torchmetrics metrics (synced across DDP ranks).

Retrieval is scored over the whole evaluation set: every image against the set's distinct caption texts.
Relevance is counted by item id: a caption is a hit for an image when any image of that item carries it, so
every caption of an item counts, and a caption shared word for word by many items (Fashion-MNIST's ten) is a
hit for each of them. Image→text R@1 on such a set is the top-1 accuracy over its captions.

R@k is reported only where k is smaller than its gallery (the distinct captions for image→text, the images for
text→image): with no more than k entries every query finds its hit by construction (Fashion-MNIST's
image→text gallery is its 10 captions, so i2t_R@10 is always 1 and is left out). `recall_mean` is the mean of
the reported ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score
from torchmetrics.utilities import dim_zero_cat
from transformers import PreTrainedModel

from trendgen.model.families import embedding_width, family_of, text_inputs
from trendgen.model.ranking import ranking_scores

RECALL_KS = (1, 5, 10)

# validation metric name -> trendgen-eval's eval.json key
EVAL_KEYS = {
    "zero_shot_accuracy": "zero_shot_accuracy",
    "zero_shot_weighted_f1": "zero_shot_weighted_f1",
    **{f"i2t_R@{k}": f"image_to_text_recall@{k}" for k in RECALL_KS},
    **{f"t2i_R@{k}": f"text_to_image_recall@{k}" for k in RECALL_KS},
}


def _pooled(output: Tensor | object) -> Tensor:
    """transformers 5 returns an output whose pooler_output is the projected feature; older ones a tensor."""
    return output if isinstance(output, Tensor) else output.pooler_output  # type: ignore[attr-defined]


def image_features(model: PreTrainedModel, pixel_values: Tensor) -> Tensor:
    """Projected (not normalised) image features [B, D]."""
    return _pooled(model.get_image_features(pixel_values=pixel_values))


def text_features(model: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Projected (not normalised) text features [B, D]; trailing padding shared by all rows is cut first
    (not for a family whose text tower pools the last position: SigLIP reads its caption there)."""
    if family_of(model).pads_to_max_length:
        return _pooled(model.get_text_features(**text_inputs(model, input_ids, attention_mask)))
    length = int(attention_mask.sum(dim=1).max().item()) if attention_mask.numel() else input_ids.shape[1]
    return _pooled(
        model.get_text_features(input_ids=input_ids[:, :length], attention_mask=attention_mask[:, :length])
    )


def batch_features(model: PreTrainedModel, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Image and text features of a batch (row i: image i and its caption); distinct captions encoded once.

    A batch with no image (every one skipped) skips the towers: its features are 0-row tensors tied to every
    trainable parameter, so backward gives those zero gradients and DDP's gradient reduction sees this rank.
    """
    if batch["caption_ids"].numel() == 0:
        anchor = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
        empty = batch["pixel_values"].new_zeros((0, embedding_width(model))) + anchor
        return empty, empty.clone()
    return image_features(model, batch["pixel_values"]), distinct_text_features(model, batch)


def distinct_text_features(model: PreTrainedModel, texts: dict[str, Tensor]) -> Tensor:
    """Text features [B, D] of rows holding `caption_ids`, `input_ids`, `attention_mask` (a batch, or one
    field of it): each distinct caption id encoded once."""
    unique, inverse = torch.unique(texts["caption_ids"], return_inverse=True)
    rows = first_occurrence(inverse, unique.numel())
    return text_features(model, texts["input_ids"][rows], texts["attention_mask"][rows])[inverse]


def first_occurrence(inverse: Tensor, n_unique: int) -> Tensor:
    """For `unique(..., return_inverse=True)`, the index of the first row holding each unique value."""
    positions = torch.arange(inverse.numel(), device=inverse.device)
    first = torch.full((n_unique,), inverse.numel(), dtype=torch.long, device=inverse.device)
    return first.scatter_reduce(0, inverse, positions, reduce="amin")


def recall_at_k(
    queries: Tensor,
    gallery: Tensor,
    relevant: Callable[[Tensor, Tensor], Tensor],
    ks: Sequence[int] = RECALL_KS,
    chunk_size: int = 1024,
) -> dict[int, float]:
    """Share of queries with a relevant gallery entry among their top k (cosine similarity).

    `relevant(query_rows [c], ranked [c, top])` says which retrieved gallery rows are hits for each query.
    """
    queries, gallery = F.normalize(queries.float(), dim=-1), F.normalize(gallery.float(), dim=-1)
    top = min(max(ks), gallery.shape[0])
    hits = dict.fromkeys(ks, 0)
    for start in range(0, queries.shape[0], chunk_size):
        rows = torch.arange(start, min(start + chunk_size, queries.shape[0]), device=queries.device)
        ranked = (queries[rows] @ gallery.T).topk(top, dim=1).indices  # [c, top]
        found = relevant(rows, ranked)
        for k in ks:
            hits[k] += int(found[:, :k].any(dim=1).sum())
    return {k: hits[k] / max(queries.shape[0], 1) for k in ks}


def _ids_or_unknown(sample_ids: Tensor | None, like: Tensor) -> Tensor:
    return torch.full_like(like, -1, dtype=torch.long) if sample_ids is None else sample_ids.long()


def _distinct_rows(sample_ids: Tensor) -> Tensor:
    """Rows to keep: the first of each sample id (all rows when some ids are unknown, i.e. -1)."""
    if sample_ids.numel() == 0 or bool((sample_ids < 0).any()):
        return torch.arange(sample_ids.numel(), device=sample_ids.device)
    unique, inverse = torch.unique(sample_ids, return_inverse=True)
    return first_occurrence(inverse, unique.numel())


class RetrievalRecall(Metric):
    """Image→text and text→image recall@k by item id over everything seen since the last reset.

    Queries: every distinct image (image→text) and every distinct caption text (text→image).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, ks: Sequence[int] = RECALL_KS, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.ks = tuple(ks)
        for name in ("image_embeds", "text_embeds", "item_ids", "caption_ids", "sample_ids", "category_ids"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        image_embeds: Tensor,
        text_embeds: Tensor,
        item_ids: Tensor,
        caption_ids: Tensor,
        sample_ids: Tensor | None = None,
        category_ids: Tensor | None = None,
    ) -> None:
        """One batch: row i is an image and its caption; `sample_ids` drop rows seen twice (DDP padding)."""
        self.image_embeds.append(image_embeds.detach().float())
        self.text_embeds.append(text_embeds.detach().float())
        self.item_ids.append(item_ids.long())
        self.caption_ids.append(caption_ids.long())
        self.sample_ids.append(_ids_or_unknown(sample_ids, item_ids))
        self.category_ids.append(_ids_or_unknown(category_ids, item_ids))

    def _rows(self) -> tuple[Tensor, Tensor, Tensor]:
        keep = _distinct_rows(dim_zero_cat(self.sample_ids))
        images, texts = dim_zero_cat(self.image_embeds)[keep], dim_zero_cat(self.text_embeds)[keep]
        keys = torch.stack([dim_zero_cat(self.item_ids), dim_zero_cat(self.caption_ids)], dim=1)[keep]
        return images, texts, keys

    def _caption_gallery(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Callable[[Tensor, Tensor], Tensor]]:
        """(images, their items, the distinct caption ids, one text embedding per distinct caption,
        `carries(item_ids, caption_ids)`: whether those items carry those captions, broadcast)."""
        images, texts, keys = self._rows()
        items, captions = keys[:, 0], keys[:, 1]
        distinct, inverse = torch.unique(captions, return_inverse=True)
        stride = int(captions.max()) + 1
        pairs = torch.unique(items * stride + captions)  # every (item, caption) seen

        def carries(item_ids: Tensor, caption_ids: Tensor) -> Tensor:
            return torch.isin(item_ids * stride + caption_ids, pairs)

        return images, items, distinct, texts[first_occurrence(inverse, distinct.numel())], carries

    def ranking_tasks(self, prompt_embeds: Tensor | None) -> dict[str, Tensor]:
        """Marqo's tasks (`trendgen.model.ranking`): `text_to_image/*` (each distinct caption ranks every
        image; relevant: the images of items carrying it) and, with category prompts, `category_to_product/*`
        (each category's prompt embedding ranks every image; relevant: the images of that category)."""
        if len(self.image_embeds) == 0:
            return {}
        images, items, distinct, captions, carries = self._caption_gallery()
        tasks = {"text_to_image": (captions, lambda rows: carries(items[None, :], distinct[rows, None]))}
        categories = dim_zero_cat(self.category_ids)[_distinct_rows(dim_zero_cat(self.sample_ids))]
        if prompt_embeds is not None and bool((categories >= 0).all()):
            classes = torch.arange(prompt_embeds.shape[0])
            tasks["category_to_product"] = (
                prompt_embeds,
                lambda rows: categories[None, :] == classes[rows, None],
            )
        out: dict[str, Tensor] = {}
        for task, (task_queries, relevant) in tasks.items():
            for name, value in ranking_scores(task_queries, images, relevant).items():
                out[f"{task}/{name}"] = torch.tensor(value)
        return out

    def count(self) -> int:
        """Distinct images scored so far."""
        return 0 if len(self.image_embeds) == 0 else int(self._rows()[0].shape[0])  # list or synced tensor

    def compute(self) -> dict[str, Tensor]:
        if len(self.image_embeds) == 0:  # every image skipped (a list, or a tensor once synced across ranks)
            return {"n_images": torch.tensor(0.0)}
        images, items, distinct, gallery_texts, carries = self._caption_gallery()

        def image_to_text(rows: Tensor, ranked: Tensor) -> Tensor:
            return carries(items[rows, None], distinct[ranked])

        def text_to_image(rows: Tensor, ranked: Tensor) -> Tensor:
            return carries(items[ranked], distinct[rows, None])

        result: dict[str, Tensor] = {}
        for name, queries, gallery, relevant in (
            ("i2t", images, gallery_texts, image_to_text),
            ("t2i", gallery_texts, images, text_to_image),
        ):
            ks = [k for k in self.ks if k < gallery.shape[0]]  # k >= gallery size: 1 by construction
            if ks:
                recall = recall_at_k(queries, gallery, relevant, ks)
                result.update({f"{name}_R@{k}": torch.tensor(v) for k, v in recall.items()})
        if result:
            result["recall_mean"] = torch.stack(list(result.values())).mean()
        result["n_images"] = torch.tensor(float(images.shape[0]))
        return result


class FacetRanking(Metric):
    """Facet→product ranking (Marqo's category and sub-category tasks, over any product field): each
    distinct text of a field ("red", "striped", "dress") ranks every image; relevant: the images whose item
    has that text (rows without one are ranked, never queried). `ranking_scores` per field, as
    `facet_<field>/<score>`. `facets`, the field names, is set before the epoch (the same on every rank)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.facets: list[str] = []  # field names, in the batches' order (the same on every rank)
        for name in ("image_embeds", "sample_ids", "facet_rows", "text_ids", "text_embeds"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        image_embeds: Tensor,
        sample_ids: Tensor,
        fields: dict[str, dict[str, Tensor]],
        texts: dict[str, Tensor],
    ) -> None:
        """One batch: `fields[name]` a batch's field (`caption_ids`: the table row of each image's text,
        `present`: whether it has one), `texts[name]` the features of those texts."""
        if not self.facets:
            return
        self.image_embeds.append(image_embeds.detach().float())
        self.sample_ids.append(sample_ids.long())
        rows = [fields[n]["caption_ids"].long().where(fields[n]["present"], -1) for n in self.facets]
        self.facet_rows.append(torch.stack(rows, dim=1))
        for name in self.facets:
            present = fields[name]["present"]
            self.text_ids.append(fields[name]["caption_ids"].long()[present])
            self.text_embeds.append(texts[name].detach().float()[present])

    def compute(self) -> dict[str, Tensor]:
        if len(self.image_embeds) == 0 or not self.facets:
            return {}
        keep = _distinct_rows(dim_zero_cat(self.sample_ids))
        images, rows = dim_zero_cat(self.image_embeds)[keep], dim_zero_cat(self.facet_rows)[keep]
        text_ids, inverse = torch.unique(dim_zero_cat(self.text_ids), return_inverse=True)
        text_embeds = dim_zero_cat(self.text_embeds)[first_occurrence(inverse, text_ids.numel())]
        out: dict[str, Tensor] = {}
        for column, name in enumerate(self.facets):
            values = rows[:, column]
            queries = torch.unique(values[values >= 0])
            embeds = text_embeds[torch.searchsorted(text_ids, queries)]

            def relevant(query_rows: Tensor, values: Tensor = values, queries: Tensor = queries) -> Tensor:
                return values[None, :] == queries[query_rows, None]

            for score, value in ranking_scores(embeds, images, relevant).items():
                out[f"facet_{name}/{score}"] = torch.tensor(value)
        return out


class ZeroShotScores(Metric):
    """Top-1 accuracy and support-weighted F1 of the categories predicted from the category prompts."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        for name in ("predictions", "targets", "sample_ids"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, predictions: Tensor, targets: Tensor, sample_ids: Tensor | None = None) -> None:
        """One batch; `sample_ids` drop rows seen twice (DDP padding)."""
        self.predictions.append(predictions.long())
        self.targets.append(targets.long())
        self.sample_ids.append(_ids_or_unknown(sample_ids, targets))

    def compute(self) -> dict[str, Tensor]:
        if len(self.predictions) == 0:
            return {"zero_shot_accuracy": torch.tensor(0.0), "zero_shot_weighted_f1": torch.tensor(0.0)}
        keep = _distinct_rows(dim_zero_cat(self.sample_ids))
        predictions, targets = dim_zero_cat(self.predictions)[keep], dim_zero_cat(self.targets)[keep]
        args = {"num_classes": self.num_classes}
        return {
            "zero_shot_accuracy": multiclass_accuracy(predictions, targets, average="micro", **args),
            "zero_shot_weighted_f1": multiclass_f1_score(predictions, targets, average="weighted", **args),
        }


def ensemble_class_embeddings(per_template: Sequence[Tensor]) -> Tensor:
    """Class embeddings [C, D] from each template's prompt embeddings [C, D] (CLIP's prompt ensembling):
    per class the normalised mean of its normalised embeddings. One template: its embeddings unchanged."""
    if len(per_template) == 1:
        return per_template[0]
    stacked = F.normalize(torch.stack([e.float() for e in per_template]), dim=-1)  # [T, C, D]
    return F.normalize(stacked.mean(dim=0), dim=-1)


def zero_shot_predictions(image_embeds: Tensor, prompt_embeds: Tensor) -> Tensor:
    """The category whose prompt is closest to each image."""
    scores = F.normalize(image_embeds.float(), dim=-1) @ F.normalize(prompt_embeds.float(), dim=-1).T
    return scores.argmax(dim=1)
