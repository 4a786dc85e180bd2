"""ClipFineTuner in a real Lightning Trainer on a few synthetic garments."""

from __future__ import annotations

import copy
import math

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from helpers.clip import build, model_cfg, trainer

from trendgen.data.datamodule import FashionDataModule
from trendgen.errors import TrendgenError
from trendgen.model.loss import SigmoidLoss
from trendgen.model.module import ClipFineTuner

torch.set_num_threads(1)


class LearningRates(pl.Callback):
    """The LR each optimizer step ran at."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_fit_clamps_the_temperature_and_schedules_the_learning_rate():
    module, datamodule = build()
    with torch.no_grad():
        module.model.logit_scale.fill_(math.log(500.0))
    rates = LearningRates()
    fit = trainer(max_steps=4, limit_val_batches=0, callbacks=[rates])
    fit.fit(module, datamodule=datamodule)

    assert module.model.logit_scale.exp().item() <= 100.0 + 1e-3
    optimizer = fit.optimizers[0]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    assert any(p is module.model.logit_scale for p in optimizer.param_groups[1]["params"])
    # transformers' warmup-cosine: 4 steps, 2 of linear warmup from 0, then cosine to the floor (0.1 x 1e-3)
    floor, peak = 1e-4, 1e-3
    halfway = floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * 0.5))
    assert rates.seen == pytest.approx([0.0, peak / 2, peak, halfway])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(floor)


def test_validation_scores_the_whole_split():
    module, datamodule = build()
    scores = trainer().validate(module, datamodule=datamodule, verbose=False)[0]
    assert scores["val/n_images"] == 16
    # R@1 and zero-shot accuracy over the whole split (not averaged over its two batches), worked out here
    i2t, t2i, zero_shot = top1_by_hand(module, datamodule)
    assert scores["val/i2t_R@1"] == pytest.approx(i2t, abs=1e-6)
    assert scores["val/t2i_R@1"] == pytest.approx(t2i, abs=1e-6)
    assert scores["val/zero_shot_accuracy"] == pytest.approx(zero_shot, abs=1e-6)
    for direction in ("i2t", "t2i"):  # a larger k never finds less (R@k only where k < the gallery)
        recalls = [scores[key] for k in (1, 5, 10) if (key := f"val/{direction}_R@{k}") in scores]
        assert recalls == sorted(recalls) and len(recalls) >= 2, (direction, recalls)
    assert 0.0 < scores["val/loss"] < math.inf  # the default checkpoint monitor


@torch.no_grad()
def top1_by_hand(module: ClipFineTuner, datamodule: FashionDataModule) -> tuple[float, float, float]:
    """(image->text R@1, text->image R@1, zero-shot accuracy) of the val split. Every item has one image and
    one caption, so a hit is a retrieved caption (image) with the query's own caption text."""
    dataset = datamodule.dataset("val")
    captions = list(dataset.captions)
    texts = sorted(set(captions))
    model = module.model.eval()

    def embed_texts(batch: list[str]) -> torch.Tensor:
        tokens = module.tokenizer(batch, padding=True, truncation=True, max_length=16, return_tensors="pt")
        features = model.get_text_features(**tokens)
        return torch.nn.functional.normalize(getattr(features, "pooler_output", features), dim=-1)

    pixels = datamodule.image_processor(
        images=[dataset[i]["image"] for i in range(len(dataset))], return_tensors="pt"
    )["pixel_values"]
    features = model.get_image_features(pixel_values=pixels)
    images = torch.nn.functional.normalize(getattr(features, "pooler_output", features), dim=-1)
    similarity = images @ embed_texts(texts).T  # [images, distinct texts]
    i2t = sum(texts[int(j)] == c for j, c in zip(similarity.argmax(1), captions, strict=True)) / len(captions)
    t2i = sum(captions[int(i)] == t for i, t in zip(similarity.argmax(0), texts, strict=True)) / len(texts)
    categories = (images @ embed_texts(datamodule.category_prompts).T).argmax(1)
    zero_shot = (categories == torch.tensor(dataset.category_ids)).float().mean().item()
    return i2t, t2i, zero_shot


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    plain, datamodule = build()
    checkpointed = ClipFineTuner(
        copy.deepcopy(plain.model),
        plain.tokenizer,
        model_cfg(gradient_checkpointing=True),
        plain.category_prompts,
    )
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    grads = []
    for module in (plain, checkpointed):
        module.train()
        loss = module.training_step(batch, 0)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in module.model.named_parameters() if p.grad is not None})
        module.loss_value = loss.item()
    assert any(getattr(m, "gradient_checkpointing", False) for m in checkpointed.model.modules())
    assert plain.loss_value == pytest.approx(checkpointed.loss_value, rel=1e-6)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_a_batch_whose_every_image_was_skipped_trains_on_and_changes_no_weight():
    """One process, a batch the collate emptied (every image unreadable): no crash in the vision tower, no
    optimizer update (AdamW's weight decay would move matrices on a zero gradient), then training goes on."""
    module, datamodule = build()
    datamodule.setup("fit")
    collate = datamodule.collate_for(datamodule.cfg.train_split)
    empty = collate([{"image": None, "reason": "truncated", "index": i} for i in range(8)])
    assert empty["pixel_values"].shape[0] == 0 and len(empty["skipped"]) == 8
    good = next(iter(datamodule.train_dataloader()))
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}

    fit = trainer(max_steps=2, limit_val_batches=0, gradient_clip_val=1.0)
    fit.fit(module, train_dataloaders=torch.utils.data.DataLoader([empty, empty], batch_size=None))
    for name, param in module.model.named_parameters():
        assert torch.equal(param, before[name]), name

    fit = trainer(max_steps=3, limit_val_batches=0)
    fit.fit(module, train_dataloaders=torch.utils.data.DataLoader([empty, good, good], batch_size=None))
    assert fit.callback_metrics["train/skipped"] == 8
    assert not torch.equal(module.model.visual_projection.weight, before["visual_projection.weight"])


def test_a_step_without_images_leaves_the_weights_and_the_optimizer_state_exactly_as_they_were():
    """A good step, then a step whose batch lost every image: the second changes no weight and no moment of
    AdamW (its step counts included), and it is counted."""
    module, datamodule = build()
    datamodule.setup("fit")
    collate = datamodule.collate_for(datamodule.cfg.train_split)
    empty = collate([{"image": None, "reason": "truncated", "index": i} for i in range(8)])
    good = next(iter(datamodule.train_dataloader()))
    kept = {}

    class Snapshot(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 1:  # after the good step, before the empty one
                kept["weights"] = {n: p.detach().clone() for n, p in pl_module.named_parameters()}
                kept["state"] = copy.deepcopy(trainer.optimizers[0].state_dict())

    fit = trainer(max_steps=2, limit_val_batches=0, callbacks=[Snapshot()])
    fit.fit(module, train_dataloaders=torch.utils.data.DataLoader([good, empty], batch_size=None))
    for name, param in module.named_parameters():
        assert torch.equal(param, kept["weights"][name]), name
    after = fit.optimizers[0].state_dict()["state"]
    for index, state in kept["state"]["state"].items():
        for key, value in state.items():
            assert torch.equal(after[index][key], value), (index, key)
    assert fit.callback_metrics["train/skipped_steps"] == 1


def test_the_sigmoid_loss_adds_a_bias_at_the_papers_start_and_trains_it():
    """`model.loss=siglip` on a CLIP (no bias of its own): a bias at -10 and the temperature at 10, both
    trained; the loss in training and validation is the sigmoid one."""
    module, datamodule = build(loss="siglip")
    assert module.logit_bias.item() == -10.0
    assert module.model.logit_scale.exp().item() == pytest.approx(10.0)
    fit = trainer(max_steps=3, limit_val_batches=0)
    fit.fit(module, datamodule=datamodule)
    assert module.logit_bias.item() != -10.0
    assert any(p is module.logit_bias for g in fit.optimizers[0].param_groups for p in g["params"])
    (scores,) = trainer(limit_val_batches=1).validate(module, datamodule=datamodule, verbose=False)
    batch = next(iter(datamodule.val_dataloader()))
    with torch.no_grad():
        images, texts = (F.normalize(f, dim=-1) for f in module.encode_batch(batch))
        scale = module.model.logit_scale.exp()
        expected = SigmoidLoss()(images, texts, scale, module.logit_bias, batch["caption_ids"], gather=False)
    assert scores["val/loss"] == pytest.approx(expected.item(), rel=1e-5)


def test_an_unknown_loss_is_refused_in_one_line():
    with pytest.raises(TrendgenError, match=r"model.loss must be one of clip, siglip, not 'sigmoid'"):
        build(loss="sigmoid")
