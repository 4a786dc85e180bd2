"""`DiffusionTrainer`: a text-to-image diffusion model trained in Lightning over diffusers parts.

One step: the batch's images (VAE latents for Stable Diffusion), a noise and a timestep per sample from the
`DDPMScheduler`, the frozen text tower's states for the captions (a share `caption_dropout` replaced by the
empty caption, for classifier-free guidance), and the MSE of the UNet's prediction against the noise or the
velocity, min-SNR weighted when `snr_gamma` is set. Noise, timestep and dropout of a sample follow from
(`noise_seed`, step, dataset row), so a run gives the same losses on 1 rank or N. EMA weights (diffusers'
`EMAModel`) are kept, validated and exported. Each validation draws the dataset's category prompts, saves a
PNG grid and scores it with the judge CLIP (`trendgen.generator.metrics`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from trendgen.errors import TrendgenError
from trendgen.generator.export import assemble_pipeline
from trendgen.generator.metrics import Judge, image_grid, sample_per_category
from trendgen.generator.parts import GeneratorParts
from trendgen.generator.pipeline import encode_text

log = logging.getLogger(__name__)

VALIDATION_STEP_KEY = 2**31 - 1  # validation noise is the same every epoch


def sample_randoms(
    rows: Tensor, step: int, seed: int, shape: tuple[int, ...], num_timesteps: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(noise [B, *shape], timestep [B], uniform [B]) of each dataset row at `step`, whatever the ranks."""
    noise, steps, uniform = [], [], []
    for row in rows.tolist():
        rng = np.random.default_rng([seed, step, int(row)])
        steps.append(int(rng.integers(num_timesteps)))
        uniform.append(float(rng.random()))
        noise.append(torch.from_numpy(rng.standard_normal(shape, dtype=np.float32)))
    return torch.stack(noise), torch.tensor(steps, dtype=torch.long), torch.tensor(uniform)


class DiffusionTrainer(pl.LightningModule):
    """Trains `parts.unet` (all of it, or its LoRA); everything else is frozen and kept out of checkpoints."""

    def __init__(
        self,
        parts: GeneratorParts,
        diffusion_cfg: DictConfig,
        sampling_cfg: DictConfig | None = None,
        category_prompts: list[str] | None = None,
        judge: Judge | None = None,
        samples_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            {"diffusion": OmegaConf.to_container(diffusion_cfg, resolve=True)}, logger=False
        )
        self.parts = parts
        self.unet = parts.unet
        self.cfg = diffusion_cfg
        self.sampling = sampling_cfg
        self.category_prompts = list(category_prompts or [])
        self.judge = judge
        self.samples_dir = samples_dir
        self.strict_loading = False  # checkpoints hold only the trained weights
        self._frozen = [m for m in (parts.text_encoder, parts.vae) if m is not None]
        self._text_cache: dict[int, tuple[Tensor, Tensor | None]] = {}
        self._latent_cache: dict[int, Tensor] = {}
        self._null: tuple[Tensor, Tensor | None] | None = None
        self.ema = None
        if diffusion_cfg.ema.enabled:
            from diffusers.training_utils import EMAModel

            ema = diffusion_cfg.ema
            self.ema = EMAModel(
                parts.trainable_parameters(), decay=ema.decay, use_ema_warmup=ema.warmup, power=ema.power
            )

    # ---- setup

    def on_fit_start(self) -> None:
        for module in self._frozen:
            module.to(self.device)
        if self.ema is not None:
            self.ema.to(self.device)

    def configure_optimizers(self) -> dict[str, Any]:
        from hydra.utils import instantiate
        from transformers import get_cosine_with_min_lr_schedule_with_warmup

        params = self.parts.trainable_parameters()
        optimizer = instantiate(self.cfg.optimizer)(params)
        total = self.trainer.estimated_stepping_batches
        if not np.isfinite(total):
            raise TrendgenError("set trainer.max_steps or trainer.max_epochs: the LR schedule needs a length")
        schedule = get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, int(self.cfg.warmup_steps), int(total), min_lr_rate=float(self.cfg.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ---- conditioning and inputs

    @torch.no_grad()
    def _encode(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor | None]:
        mask = attention_mask if self.parts.text_mask else None
        return encode_text(self.parts.text_encoder, input_ids, mask)

    def null_condition(self) -> tuple[Tensor, Tensor | None]:
        """The empty caption's states: what dropped captions become, and the guidance baseline."""
        if self._null is None:
            tokens = self.parts.tokenizer(
                [""],
                padding="max_length",
                max_length=self.parts.max_length,
                truncation=True,
                return_tensors="pt",
            )
            self._null = self._encode(
                tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
            )
        return self._null

    def text_condition(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        """Token states and pooled embeddings of the batch's captions; each distinct caption encoded once
        per run when `cache_text_embeddings` (the text tower is frozen), else every step."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if not self.cfg.cache_text_embeddings:
            return self._encode(ids, mask)
        rows = batch["caption_ids"].tolist()
        missing = sorted({r for r in rows if r not in self._text_cache})
        if missing:
            first = {r: i for i, r in reversed(list(enumerate(rows)))}
            pick = torch.tensor([first[r] for r in missing], device=ids.device)
            hidden, pooled = self._encode(ids[pick], mask[pick])
            for k, r in enumerate(missing):  # kept in host memory: a large caption set must not fill a GPU
                self._text_cache[r] = (hidden[k].cpu(), None if pooled is None else pooled[k].cpu())
        hidden = torch.stack([self._text_cache[r][0] for r in rows]).to(self.device)
        if not self.parts.uses_pooled:
            return hidden, None
        return hidden, torch.stack([self._text_cache[r][1] for r in rows]).to(self.device)

    @torch.no_grad()
    def clean_inputs(self, batch: dict[str, Any]) -> Tensor:
        """What the UNet denoises: pixels in [-1, 1], or the VAE's scaled latents (cached by dataset row)."""
        pixels = batch["pixel_values"]
        vae = self.parts.vae
        if vae is None:
            return pixels
        rows = batch["index"].tolist()  # rows of the training split: only training batches use the cache
        use_cache = self.cfg.cache_latents and self.trainer is not None and self.trainer.training
        if use_cache and all(r in self._latent_cache for r in rows):
            return torch.stack([self._latent_cache[r] for r in rows]).to(self.device, torch.float32)
        latents = vae.encode(pixels.to(vae.dtype)).latent_dist.mode() * vae.config.scaling_factor
        if use_cache:
            for r, latent in zip(rows, latents, strict=True):
                self._latent_cache[r] = latent.to("cpu", torch.float16)
        return latents.float()

    # ---- the loss

    def diffusion_loss(self, batch: dict[str, Any], step: int, drop_captions: bool = True) -> Tensor:
        """Mean (min-SNR weighted) MSE of the UNet's prediction over the batch."""
        if batch["pixel_values"].shape[0] == 0:  # every image of the batch unusable: take part, add nothing
            return sum(p.sum() for p in self.parts.trainable_parameters()) * 0.0
        x0 = self.clean_inputs(batch)
        sched = self.parts.noise_scheduler
        noise, timesteps, uniform = sample_randoms(
            batch["index"],
            step,
            int(self.cfg.noise_seed),
            tuple(x0.shape[1:]),
            sched.config.num_train_timesteps,
        )
        noise, timesteps = noise.to(x0), timesteps.to(self.device)
        hidden, pooled = self.text_condition(batch)
        if drop_captions and self.cfg.caption_dropout > 0:
            drop = (uniform < float(self.cfg.caption_dropout)).to(self.device)
            null_hidden, null_pooled = self.null_condition()
            hidden = torch.where(drop[:, None, None], null_hidden, hidden)
            if pooled is not None:
                pooled = torch.where(drop[:, None], null_pooled, pooled)
        noisy = sched.add_noise(x0, noise, timesteps)
        target = (
            noise if sched.config.prediction_type == "epsilon" else sched.get_velocity(x0, noise, timesteps)
        )
        pred = self.unet(
            noisy,
            timesteps,
            encoder_hidden_states=hidden,
            class_labels=pooled if self.parts.uses_pooled else None,
        ).sample
        per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        if self.cfg.snr_gamma:
            from diffusers.training_utils import compute_snr

            snr = compute_snr(sched, timesteps)
            clipped = torch.clamp(snr, max=float(self.cfg.snr_gamma))
            weights = clipped / snr if sched.config.prediction_type == "epsilon" else clipped / (snr + 1)
            per_sample = per_sample * weights
        return per_sample.mean()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss = self.diffusion_loss(batch, self.global_step)
        size = max(int(batch["pixel_values"].shape[0]), 1)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log(
            "train/skipped",
            float(len(batch["skipped"])),
            on_step=False,
            on_epoch=True,
            reduce_fx="sum",
            sync_dist=True,
            batch_size=1,
        )
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:  # once per optimizer step, after it
            self.ema.step(self.parts.trainable_parameters())

    # ---- EMA in checkpoints, validation and export

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trained = [n for n, p in self.named_parameters() if p.requires_grad]
        state = {k: v for k, v in checkpoint["state_dict"].items() if k in set(trained)}
        if self.ema is not None and self.ema.temp_stored_params is not None:  # saved while EMA is swapped in
            state.update(zip(trained, self.ema.temp_stored_params, strict=True))  # (e.g. a SLURM signal)
        checkpoint["state_dict"] = state
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.ema is not None and "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])

    def swap_in_ema(self) -> None:
        """Put the EMA weights in the UNet (the trained ones kept aside); `swap_out_ema` undoes it."""
        if self.ema is not None:
            params = self.parts.trainable_parameters()
            self.ema.store(params)
            self.ema.copy_to(params)

    def swap_out_ema(self) -> None:
        if self.ema is not None:
            self.ema.restore(self.parts.trainable_parameters())

    def on_validation_epoch_start(self) -> None:
        self.swap_in_ema()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss = self.diffusion_loss(batch, VALIDATION_STEP_KEY, drop_captions=False)
        self.log(
            "val/loss",
            loss,
            prog_bar=True,
            sync_dist=True,
            batch_size=max(int(batch["pixel_values"].shape[0]), 1),
        )

    def on_validation_epoch_end(self) -> None:
        try:
            scores = self.sample_and_score() if self.trainer.is_global_zero else None
            scores = self.trainer.strategy.broadcast(scores, src=0)
        finally:
            self.swap_out_ema()
        for name, value in (scores or {}).items():
            self.log(f"val/{name}", float(value), sync_dist=False, rank_zero_only=False)

    @torch.no_grad()
    def sample_and_score(self) -> dict[str, float]:
        """Draw the category prompts (rank 0), save the grid, log it to W&B and score it with the judge."""
        s = self.sampling
        if s is None or not self.category_prompts or s.samples_per_prompt <= 0:
            return {}
        pipe = assemble_pipeline(self.parts)
        was_training = self.unet.training
        self.unet.eval()
        images, category_ids = sample_per_category(
            pipe,
            self.category_prompts,
            int(s.samples_per_prompt),
            int(s.steps),
            float(s.guidance),
            int(s.seed),
            int(s.batch_size),
        )
        self.unet.train(was_training)
        grid = image_grid(images, int(s.samples_per_prompt))
        if self.samples_dir is not None:
            self.samples_dir.mkdir(parents=True, exist_ok=True)
            grid.save(self.samples_dir / f"epoch{self.current_epoch:03d}-step{self.global_step}.png")
        for logger in self.trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="samples", images=[grid], caption=[" | ".join(self.category_prompts)])
        return self.judge.score(images, category_ids) if self.judge is not None else {}
