"""Multi-field training and the facet ranking tasks: one term per field, weighted; facet->product scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers.clip import build, trainer

from trendgen.model.loss import ContrastiveLoss
from trendgen.model.metrics import FacetRanking, batch_features, distinct_text_features
from trendgen.model.multi_field import multi_field_loss


def test_facet_ranking_scores_each_field_value_against_every_image():
    images = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8], [0.7, 0.7]])
    rows = torch.tensor([5, 5, 7, 7, 9])  # caption-table rows: red, red, blue, blue, and "" (no colour)
    present = torch.tensor([True, True, True, True, False])
    texts = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.1], [1.0, 0.1], [0.7, 0.7]])  # "blue" points at red

    def colour(part):
        return {"color": {"caption_ids": rows[part], "present": present[part]}}, {"color": texts[part]}

    metric = FacetRanking()
    metric.facets = ["color"]
    for part in (slice(0, 2), slice(2, 5), slice(0, 1)):  # the last: a row seen twice (DDP padding)
        metric.update(images[part], torch.arange(5)[part], *colour(part))
    scores = metric.compute()
    # red ranks 0, 1, 4, 3, 2: its first hit at 1; blue the same: its first hit (3) at rank 4;
    # the row without a colour is ranked but never a query
    assert scores["facet_color/precision@1"].item() == 0.5
    assert abs(scores["facet_color/mrr"].item() - (1 + 1 / 4) / 2) < 1e-6
    assert abs(scores["facet_color/map"].item() - ((1 + 1) / 2 + (1 / 4 + 2 / 5) / 2) / 2) < 1e-6


def test_the_loss_is_the_weighted_mean_of_one_term_per_field():
    module, data = build(batch_size=16)
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))  # evaluation batches carry every field
    images, captions = (F.normalize(x, dim=-1) for x in batch_features(module.model, batch))
    scale = module.model.logit_scale.exp()
    clip = ContrastiveLoss(multi_positive=True)

    def term(texts, ids):
        return clip(images, texts, scale, ids, None, gather=False)

    def term_loss(images, texts, ids, sizes):
        return clip(images, texts, scale, ids, sizes)

    weights = {"caption": 1.0, "color": 2.0, "garment": 0.5}
    sizes = [int(batch["caption_ids"].numel())]
    total, terms = multi_field_loss(module.model, weights, images, captions, batch, sizes, term_loss)
    colour = batch["fields"]["color"]
    expected_colour = term(
        F.normalize(distinct_text_features(module.model, colour), dim=-1), colour["caption_ids"]
    )
    torch.testing.assert_close(terms["color"], expected_colour)
    torch.testing.assert_close(terms["caption"], term(captions, batch["caption_ids"]))
    expected = (terms["caption"] + 2.0 * terms["color"] + 0.5 * terms["garment"]) / 3.5
    torch.testing.assert_close(total, expected)
    assert not torch.allclose(terms["color"], terms["caption"])


def test_rows_without_a_field_text_sit_out_that_term_only():
    module, data = build(batch_size=16)
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    images, captions = (F.normalize(x, dim=-1) for x in batch_features(module.model, batch))
    scale = module.model.logit_scale.exp()
    clip = ContrastiveLoss(multi_positive=True)
    colour = batch["fields"]["color"]
    colour["present"][::2] = False  # say, replayed rows of another dataset

    def term_loss(images, texts, ids, sizes):
        return clip(images, texts, scale, ids, sizes)

    sizes = [int(batch["caption_ids"].numel())]
    _, terms = multi_field_loss(
        module.model, {"caption": 1.0, "color": 1.0}, images, captions, batch, sizes, term_loss
    )
    keep = colour["present"]
    texts = F.normalize(distinct_text_features(module.model, colour), dim=-1)
    expected = clip(images[keep], texts[keep], scale, colour["caption_ids"][keep], [int(keep.sum())])
    torch.testing.assert_close(terms["color"], expected)
    torch.testing.assert_close(terms["caption"], clip(images, captions, scale, batch["caption_ids"], sizes))


def test_a_multi_field_run_trains_every_term_and_tests_every_facet():
    module, data = build(batch_size=16)
    data.cfg.fields = {"color": 1.0, "pattern": 1.0}
    module.field_weights = {"caption": 1.0, "color": 1.0, "pattern": 1.0}
    fit = trainer(max_steps=2, limit_val_batches=0)
    fit.fit(module, datamodule=data)
    assert {"train/loss/caption", "train/loss/color", "train/loss/pattern"} <= set(fit.logged_metrics)
    data.cfg.split = "test"
    tested = fit.test(module, datamodule=data, verbose=False)[0]
    for facet in ("garment", "color", "pattern"):
        assert 0.0 <= tested[f"test/facet_{facet}/precision@1"] <= 1.0
        assert tested[f"test/facet_{facet}/mrr"] > 0.0
