"""`TrendgenPipeline`: a diffusers pipeline for the pixel-space generator trendgen trains from scratch.

Components: `unet` (UNet2DConditionModel on RGB pixels in [-1, 1]), `scheduler`, `text_encoder` (the text
tower of a trendgen CLIP, `CLIPTextModelWithProjection`, or SigLIP, `SiglipTextModel`) and its `tokenizer`.
The UNet cross-attends to the text tower's token states and, when its config has
`class_embed_type="projection"`, also takes the pooled text embedding (the one the contrastive loss trained)
added to its time embedding: a strong, global conditioning that a tiny text tower's token states alone do
not give. Classifier-free guidance uses the empty prompt, as in training. It saves and loads like any
diffusers pipeline (`save_pretrained`, `TrendgenPipeline.from_pretrained`) and is called like
`StableDiffusionPipeline` (prompt, negative_prompt, steps, guidance, generator).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from torch import Tensor


def encode_text(
    text_encoder: Any, input_ids: Tensor, attention_mask: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """(token states [B, L, D], L2-normalised pooled text embedding [B, P] or None) of a frozen text tower:
    CLIP's projected `text_embeds`, or SigLIP's head output (Stable Diffusion's CLIPTextModel gives none).
    A SigLIP tower reads its full-length padding unmasked, as it was trained."""
    siglip = text_encoder.config.model_type == "siglip_text_model"
    out = text_encoder(input_ids=input_ids, attention_mask=None if siglip else attention_mask)
    pooled = getattr(out, "text_embeds", None)
    if pooled is None and siglip:
        pooled = out.pooler_output
    return out.last_hidden_state, (F.normalize(pooled, dim=-1) if pooled is not None else None)


def to_pil(pixels: Tensor) -> list[Image.Image]:
    """[-1, 1] pixels [B, 3, H, W] -> PIL images."""
    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a) for a in array.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)]


def pixel_processor(resolution: int) -> Any:
    """Resize the short side, centre-crop to `resolution`, scale to [-1, 1]: what the generator learns."""
    from transformers.models.clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": resolution},
        crop_size={"height": resolution, "width": resolution},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


class TrendgenPipeline(DiffusionPipeline):
    """Text-to-image sampling in pixel space with classifier-free guidance."""

    model_cpu_offload_seq = "text_encoder->unet"

    def __init__(self, unet: Any, scheduler: Any, text_encoder: Any, tokenizer: Any) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer)

    @property
    def uses_pooled(self) -> bool:
        return self.unet.config.class_embed_type == "projection"

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> tuple[Tensor, Tensor | None]:
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=min(self.tokenizer.model_max_length, self.text_encoder.config.max_position_embeddings),
            truncation=True,
            return_tensors="pt",
        )
        return encode_text(
            self.text_encoder, tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        )

    def denoise(
        self, hidden: Tensor, pooled: Tensor | None, sample: Tensor, timestep: Tensor, guidance: float
    ) -> Tensor:
        """The model output for `sample` at `timestep`, guided: rows [uncond; cond] of hidden/pooled."""
        doubled = guidance != 1.0
        model_in = torch.cat([sample, sample]) if doubled else sample
        model_in = self.scheduler.scale_model_input(model_in, timestep)
        out = self.unet(
            model_in,
            timestep,
            encoder_hidden_states=hidden,
            class_labels=pooled if self.uses_pooled else None,
        ).sample
        if not doubled:
            return out
        uncond, cond = out.chunk(2)
        return uncond + guidance * (cond - uncond)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 3.0,
        height: int | None = None,
        width: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_images_per_prompt: int = 1,
        output_type: str = "pil",
    ) -> ImagePipelineOutput:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        n = len(prompts)
        negatives = [negative_prompt or ""] * n if not isinstance(negative_prompt, list) else negative_prompt
        hidden, pooled = self.encode_prompt(prompts)
        if guidance_scale != 1.0:
            null_hidden, null_pooled = self.encode_prompt(list(negatives))
            hidden = torch.cat([null_hidden, hidden])
            pooled = torch.cat([null_pooled, pooled]) if pooled is not None else None
        size = self.unet.config.sample_size
        shape = (n, self.unet.config.in_channels, height or size, width or size)
        sample = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        sample = sample * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_out = self.denoise(hidden, pooled, sample, t, guidance_scale)
            sample = self.scheduler.step(model_out, t, sample).prev_sample
        images = sample.clamp(-1, 1) if output_type == "pt" else to_pil(sample)
        return ImagePipelineOutput(images=images)


def dtype_keyword() -> str:
    """`dtype` where diffusers takes it (it deprecates `torch_dtype`), else `torch_dtype`."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
