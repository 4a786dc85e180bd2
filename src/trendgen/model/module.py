"""`ClipFineTuner`: contrastive fine-tuning of a transformers CLIPModel or SiglipModel in Lightning."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback
from torch import Tensor, nn
from torchmetrics import MeanMetric
from transformers import PreTrainedModel, get_cosine_with_min_lr_schedule_with_warmup

from trendgen.errors import TrendgenError
from trendgen.model.ema import InterruptSafeEMA
from trendgen.model.families import tokenize_texts
from trendgen.model.freeze import apply_freeze
from trendgen.model.grad_cache import cached_backward
from trendgen.model.image_retrieval import QueryGalleryRecall
from trendgen.model.lora import add_lora
from trendgen.model.loss import LOSSES, SigmoidLoss, rank_sizes
from trendgen.model.metrics import (
    FacetRanking,
    RetrievalRecall,
    ZeroShotScores,
    batch_features,
    distinct_text_features,
    ensemble_class_embeddings,
    text_features,
    zero_shot_predictions,
)
from trendgen.model.multi_field import multi_field_loss
from trendgen.model.optim import no_weight_decay_ids, parameter_groups

log = logging.getLogger(__name__)


def build_loss(model_cfg: Any) -> nn.Module:
    """The training objective `model.loss` names (`trendgen.model.loss.LOSSES`)."""
    name = str(model_cfg.get("loss", "clip"))
    if name not in LOSSES:
        raise TrendgenError(f"model.loss must be one of {', '.join(LOSSES)}, not {name!r}")
    return LOSSES[name](multi_positive=model_cfg.multi_positive)


def sigmoid_bias(model: PreTrainedModel, model_cfg: Any) -> nn.Parameter:
    """The sigmoid loss's learnable bias. A CLIP has none: one is added at -10 and the temperature set to 10,
    as SigLIP initialises both (logged); it trains with the temperature (`freeze.train_logit_scale`), lives
    in the checkpoints, and is not part of the exported CLIP folder (retrieval ranks by cosine alone)."""
    name = type(model).__name__
    log.info("model.loss=siglip: %s has no logit bias; added at -10, temperature set to 10", name)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(10.0))
    bias = nn.Parameter(torch.tensor(-10.0))
    bias.requires_grad_(bool(model_cfg.freeze.train_logit_scale))
    return bias


def split_weight_decay(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Trainable parameters with and without weight decay.

    No decay on biases, norms, the class embedding and logit_scale (all below 2-D) nor on token and position
    embeddings; matrices and the patch convolution decay.
    """
    skip = no_weight_decay_ids(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [p for p in trainable if id(p) not in skip], [p for p in trainable if id(p) in skip]


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Recompute each encoder block's activations in backward (non-reentrant: frozen inputs still work)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


class ClipFineTuner(pl.LightningModule):
    """CLIP trained with the global-batch contrastive loss; validated on retrieval and zero-shot accuracy.

    Validation logs `val/loss` (the contrastive loss of each val batch on its own, the mean over the split's
    rows: the default checkpoint monitor, it moves with every change of the towers and the temperature),
    `val/zero_shot_accuracy` and `val/zero_shot_weighted_f1` (datasets with categories), `val/{i2t,t2i}_R@k`
    for each k smaller than its gallery and their mean `val/recall_mean`, `val/n_images`, `val/skipped`.

    `model_cfg` is the `model` config group (a ModelConfig); `category_prompts` are the dataset's zero-shot
    prompts, index = category id: one list of them, or one list per template of a prompt ensemble (each
    class embedding is then the normalised mean of its normalised per-template embeddings).
    With `model.ema` set, validation, checkpoints and the weights left after fit are the EMA weights.
    `field_weights` (`data.fields`, see `trendgen.data.fields`): one contrastive term per field.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: Any,
        model_cfg: DictConfig,
        category_prompts: Sequence[str] | Sequence[Sequence[str]],
        micro_batch: int | None = None,
        field_weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self._kept: tuple[dict[str, Tensor], dict[str, Any]] | None = None  # see on_train_batch_start
        self.save_hyperparameters({"model": OmegaConf.to_container(model_cfg, resolve=True)}, logger=False)
        self.model = model
        self.tokenizer = tokenizer
        self.cfg = model_cfg
        self.prompt_templates = _per_template(category_prompts)
        self.category_prompts = self.prompt_templates[0] if self.prompt_templates else []
        self.max_text_length = model.config.text_config.max_position_embeddings
        lora_cfg = model_cfg.get("lora")
        apply_freeze(model, model_cfg.freeze, allow_empty=bool(lora_cfg and lora_cfg.enabled))
        self.lora = add_lora(model, lora_cfg)  # adapters in place; None when model.lora is off
        if model_cfg.gradient_checkpointing:
            enable_activation_checkpointing(model)
        self.loss_fn = build_loss(model_cfg)
        self.logit_bias = self._added_bias(model, model_cfg)
        # model.contrastive_batch: gradient caching under manual optimization, micro-batches of this many rows
        self.micro_batch = micro_batch if model_cfg.get("contrastive_batch") else None
        self.automatic_optimization = self.micro_batch is None
        self.field_weights = dict(field_weights or {})
        if self.field_weights and self.micro_batch is not None:
            raise TrendgenError("data.fields does not combine with model.contrastive_batch yet")
        if self.field_weights and not model_cfg.multi_positive:  # a field's texts repeat in every batch
            raise TrendgenError(
                "data.fields needs model.multi_positive=true (equal field texts are positives)"
            )
        # the clamp of the temperature: model.max_logit_scale, or a checkpoint's own if higher (SigLIP's ~110)
        self.max_log_scale = max(math.log(model_cfg.max_logit_scale), float(model.logit_scale.max()))
        self.gradient_clip_val: float | None = None  # manual optimization clips here, not in the Trainer
        self.retrieval = RetrievalRecall()
        self.query_gallery = QueryGalleryRecall()  # datasets with query/gallery roles (In-shop)
        self.facets = FacetRanking()  # datasets with product fields, when testing
        self.zero_shot = ZeroShotScores(num_classes=max(len(self.category_prompts), 2))
        self.eval_loss = MeanMetric()  # the contrastive loss of each evaluation batch, weighted by its rows
        self._prompt_embeds: Tensor | None = None

    def _added_bias(self, model: PreTrainedModel, model_cfg: Any) -> nn.Parameter | None:
        """The bias the sigmoid loss adds to a model without one (a CLIP). A SigLIP's own bias is used as it
        is, and frozen under the softmax loss, which leaves it unused (DDP refuses unused weights)."""
        own = getattr(model, "logit_bias", None)
        if isinstance(self.loss_fn, SigmoidLoss):
            return None if own is not None else sigmoid_bias(model, model_cfg)
        if own is not None and own.requires_grad:
            log.info("model.loss=clip leaves %s's logit_bias unused: frozen", type(model).__name__)
            own.requires_grad_(False)
        return None

    def loss_bias(self) -> Tensor | None:
        """The sigmoid loss's bias (the model's own or the added one); None under the softmax loss."""
        if not isinstance(self.loss_fn, SigmoidLoss):
            return None
        return self.logit_bias if self.logit_bias is not None else self.model.logit_bias.squeeze()

    def configure_model(self) -> None:
        if self.cfg.compile and not getattr(self, "_compiled", False):
            # in-place compilation keeps parameter names, so checkpoints and save_pretrained are unchanged
            self.model.vision_model.compile()
            self.model.text_model.compile()
            self._compiled = True

    def export_model(self) -> PreTrainedModel:
        """What to save: the trained model, or with LoRA a merged copy (plain transformers loads it)."""
        return self.lora.merged_copy() if self.lora is not None else self.model

    # ---- features

    def encode_batch(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Image and text features of a batch (see `batch_features`: an empty batch gives 0 rows)."""
        return batch_features(self.model, batch)

    def class_embeddings(self) -> Tensor | None:
        """Zero-shot class embeddings [C, D] from the prompt templates (None without categories)."""
        if not self.category_prompts:
            return None
        return ensemble_class_embeddings([self.encode_prompts(p) for p in self.prompt_templates])

    def encode_prompts(self, prompts: Sequence[str]) -> Tensor:
        tokens = tokenize_texts(self.model, self.tokenizer, prompts, self.max_text_length)
        return text_features(
            self.model, tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        )

    # ---- training

    def on_train_batch_start(self, batch: dict[str, Any], batch_idx: int) -> None:
        """When no rank has an image in this step, keep the weights and the optimizer's state to put back
        after the step: every rank still steps (DDP needs it), and AdamW would otherwise move the weights on
        a zero gradient (weight decay, moments)."""
        self._kept = None
        if sum(rank_sizes(int(batch["caption_ids"].numel()), self.device)) == 0:
            optimizer = self.optimizers()
            self._kept = (
                {n: p.detach().clone() for n, p in self.named_parameters()},
                copy.deepcopy(optimizer.optimizer.state_dict() if hasattr(optimizer, "optimizer") else {}),
            )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """The weighted contrastive loss of this rank's rows (see `ContrastiveLoss`).

        A rank whose batch lost every image takes part with 0 rows and adds nothing. When no rank has an
        image, the loss is a zero that still reaches every trainable weight (each rank backpropagates, as DDP
        requires) and the step is undone afterwards (`on_train_batch_start`, `on_train_batch_end`), counted
        in `train/skipped_steps`.
        """
        size = int(batch["caption_ids"].numel())
        self.log(
            "train/skipped",
            float(len(batch["skipped"])),
            on_step=False,
            on_epoch=True,
            reduce_fx="sum",
            sync_dist=True,
            batch_size=1,
        )
        sizes = rank_sizes(size, self.device)
        if sum(sizes) == 0:
            self.log("train/skipped_steps", 1.0, on_step=False, on_epoch=True, reduce_fx="sum", batch_size=1)
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        if self.micro_batch is not None:
            loss = self.cached_step(batch, sizes)
        else:
            images, texts = self.encode_batch(batch)
            images, texts = F.normalize(images, dim=-1), F.normalize(texts, dim=-1)
            if self.field_weights:
                loss, terms = multi_field_loss(
                    self.model,
                    self.field_weights,
                    images,
                    texts,
                    batch,
                    sizes,
                    self.contrastive_loss,
                )
                for name, term in terms.items():
                    self.log(f"train/loss/{name}", term, batch_size=max(size, 1))
            else:
                loss = self.contrastive_loss(images, texts, batch["caption_ids"], sizes)
        self.log("train/loss", loss, prog_bar=True, batch_size=max(size, 1))
        scale = self.model.logit_scale.exp().detach().squeeze()
        self.log("train/logit_scale", scale, batch_size=max(size, 1))
        if (bias := self.loss_bias()) is not None:
            self.log("train/logit_bias", bias.detach(), batch_size=max(size, 1))
        return loss

    def cached_step(self, batch: dict[str, Any], sizes: list[int]) -> Tensor:
        """One optimizer step of gradient caching (`trendgen.model.grad_cache`); the loss."""
        optimizer = self.optimizers()
        loss = cached_backward(self, batch, int(self.micro_batch), sizes)
        if self.gradient_clip_val:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm"
            )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.lr_schedulers().step()
        return loss

    def contrastive_loss(
        self,
        images: Tensor,
        texts: Tensor,
        caption_ids: Tensor,
        sizes: list[int] | None = None,
        gather: bool = True,
    ) -> Tensor:
        """`model.loss` of unit features: InfoNCE at the temperature, or the sigmoid loss with the bias."""
        scale = self.model.logit_scale.exp().squeeze()
        if (bias := self.loss_bias()) is not None:
            return self.loss_fn(images, texts, scale, bias, caption_ids, sizes, gather=gather)
        return self.loss_fn(images, texts, scale, caption_ids, sizes, gather=gather)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._kept is not None:  # a step without any image: put the weights and the optimizer back
            weights, state = self._kept
            with torch.no_grad():
                for name, param in self.named_parameters():
                    param.copy_(weights[name])
            optimizer = self.optimizers()
            if hasattr(optimizer, "optimizer"):
                optimizer.optimizer.load_state_dict(state)
            self._kept = None
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, self.max_log_scale)

    def on_fit_start(self) -> None:
        if self.micro_batch is not None and self.trainer.world_size > 1:
            raise TrendgenError("model.contrastive_batch runs in one process for now, not under DDP")

    def configure_callbacks(self) -> list[Callback]:
        """`model.ema`: Lightning's EMA callback (validation swaps the EMA weights in; checkpoints hold them
        as `state_dict` and the raw weights as `current_model_state`; after fit the module holds them). A
        fresh one per Trainer stage: validating or testing a checkpoint after fit scores its EMA weights."""
        decay = self.cfg.get("ema")
        if decay is None:
            return []
        if not 0.0 < float(decay) < 1.0:
            raise TrendgenError(f"model.ema={decay} must be a decay in (0, 1), e.g. 0.999 (null: no EMA)")
        return [InterruptSafeEMA(decay=float(decay))]

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer_cfg = self.cfg.optimizer
        groups = parameter_groups(
            self.model, float(optimizer_cfg.lr), self.cfg.lr_groups, float(self.cfg.layer_decay)
        )
        if self.logit_bias is not None and self.logit_bias.requires_grad:
            groups.append({"params": [self.logit_bias], "weight_decay": 0.0, "lr": float(optimizer_cfg.lr)})
        optimizer = instantiate(optimizer_cfg)(groups)
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise TrendgenError("set trainer.max_steps or trainer.max_epochs: the LR schedule needs a length")
        # linear warmup over `warmup_fraction` of the steps (from 0), then cosine down to `min_lr_ratio`
        schedule = get_cosine_with_min_lr_schedule_with_warmup(
            optimizer,
            int(int(total) * self.cfg.warmup_fraction),
            int(total),
            min_lr_rate=float(self.cfg.min_lr_ratio),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ---- validation

    def on_validation_epoch_start(self) -> None:
        self._prompt_embeds = self.class_embeddings()
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.trainer.testing and hasattr(datamodule, "facet_names"):
            self.facets.facets = datamodule.facet_names()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        stage = "test" if self.trainer.testing else "val"
        skipped = float(len(batch["skipped"]))
        self.log(f"{stage}/skipped", skipped, reduce_fx="sum", sync_dist=True, batch_size=1)
        if batch["caption_ids"].numel() == 0:
            return
        images, texts = self.encode_batch(batch)
        normalized = F.normalize(images, dim=-1), F.normalize(texts, dim=-1)
        loss = self.contrastive_loss(*normalized, batch["caption_ids"], gather=False)
        self.eval_loss.update(loss, weight=batch["caption_ids"].numel())
        samples = batch.get("index")  # dataset rows: DDP's padded repeats are counted once
        self.retrieval.update(
            images, texts, batch["item_ids"], batch["caption_ids"], samples, batch.get("category_ids")
        )
        # query/gallery roles (In-shop); other datasets add no rows, so every rank computes alike
        rows = slice(None) if "is_query" in batch else slice(0, 0)
        is_query = batch.get("is_query", batch["item_ids"].bool())
        self.query_gallery.update(images[rows], batch["item_ids"][rows], is_query[rows], batch["index"][rows])
        if self._prompt_embeds is not None:
            predictions = zero_shot_predictions(images, self._prompt_embeds)
            self.zero_shot.update(predictions, batch["category_ids"], samples)
        if self.trainer.testing and self.facets.facets:  # facet->product ranking (trendgen-eval)
            parts = {name: batch["fields"][name] for name in self.facets.facets}
            texts = {name: distinct_text_features(self.model, part) for name, part in parts.items()}
            self.facets.update(images, batch["index"], parts, texts)

    def on_validation_epoch_end(self) -> None:
        stage = "test" if self.trainer.testing else "val"
        metrics = self.retrieval.compute()  # gathered from every rank by torchmetrics, duplicates removed
        if self.trainer.testing:  # trendgen-eval: Marqo's ranking tasks too (every gallery entry ranked)
            metrics.update(self.retrieval.ranking_tasks(self._prompt_embeds))
            metrics.update(self.facets.compute())
            self.facets.reset()
        metrics.update(self.query_gallery.compute())  # q2g_R@k, when the split has query/gallery roles
        if self._prompt_embeds is not None:
            metrics.update(self.zero_shot.compute())
        metrics["loss"] = self.eval_loss.compute()  # nan when every image was skipped (every rank syncs)
        for name, value in metrics.items():  # equal on every rank: syncing (a mean) changes nothing
            value = value.to(self.device).float()
            self.log(f"{stage}/{name}", value, prog_bar=name == "loss", sync_dist=True)
        self.retrieval.reset()
        self.query_gallery.reset()
        self.zero_shot.reset()
        self.eval_loss.reset()

    # trendgen-eval scores `data.split` through Lightning's test loop with the same code
    on_test_epoch_start = on_validation_epoch_start
    test_step = validation_step
    on_test_epoch_end = on_validation_epoch_end


def _per_template(prompts: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    """[template][category] prompts from one flat list (one template) or a list per template."""
    prompts = list(prompts)
    if not prompts:
        return []
    if all(isinstance(p, str) for p in prompts):
        return [list(prompts)]  # type: ignore[arg-type]
    rows = [list(p) for p in prompts]
    if len({len(r) for r in rows}) != 1:
        raise ValueError("every template of a prompt ensemble needs one prompt per category")
    return rows
