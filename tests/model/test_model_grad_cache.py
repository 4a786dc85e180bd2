"""Gradient caching (`model.contrastive_batch`): one step over a batch in micro-batches is one true batch."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from helpers.clip import build, trainer

from trendgen.errors import TrendgenError
from trendgen.recipes.train import contrastive_batching


class Gradients(pl.Callback):
    """Every trainable parameter's gradient just before the first optimizer step."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.grads:
            self.grads = {n: p.grad.clone() for n, p in pl_module.named_parameters() if p.grad is not None}


def one_step(**settings) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    module, datamodule = build(batch_size=32, **settings)
    seen = Gradients()
    trainer(max_steps=1, limit_val_batches=0, gradient_clip_val=None, callbacks=[seen]).fit(
        module, datamodule
    )
    return seen.grads, {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_micro_batches_give_the_gradients_and_weights_of_one_batch(loss):
    true_grads, true_weights = one_step(loss=loss)
    grads, weights = one_step(loss=loss, contrastive_batch=32, micro_batch=8)
    assert grads.keys() == true_grads.keys() and len(grads) > 10
    for name, grad in true_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)
    # A key projection's bias has no gradient at all (softmax ignores a shift shared by every key): its float
    # noise differs between the two ways, and AdamW's first step turns any noise into +-lr. Every other
    # weight matches.
    noise_only = {n for n, g in true_grads.items() if g.abs().max() < 1e-7}
    assert noise_only and all(n.endswith("k_proj.bias") for n in noise_only)
    for name, weight in true_weights.items():
        if name not in noise_only:
            torch.testing.assert_close(weights[name], weight, rtol=0, atol=1e-5, msg=name)


def test_a_contrastive_batch_must_be_whole_micro_batches():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"model": {"contrastive_batch": 100}, "data": {"batch_size": 64}})
    with pytest.raises(
        TrendgenError, match=r"model.contrastive_batch=100 is not a multiple of data.batch_size=64"
    ):
        contrastive_batching(cfg)
    cfg.model.contrastive_batch = 512
    data, micro = contrastive_batching(cfg)
    assert (data.batch_size, micro, cfg.data.batch_size) == (512, 64, 64)
