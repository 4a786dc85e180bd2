"""Generator metrics a user can sweep on, judged by a CLIP folder (by default the generator's own CLIP).

- prompt fidelity: the share of images that the judge's zero-shot classifier (the dataset's category prompts)
  assigns to the category their prompt names; chance is 1 / categories.
- CLIP score: torchmetrics' `CLIPScore` on the judge CLIP, image against its prompt.
- novelty: each image's cosine to its nearest training image in the judge's embedding, against the same figure
  for real held-out images. An image nearer to a training image than `near_copy_quantile` of real held-out
  images are is a near-copy; `near_copy_rate` is the share of such images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from trendgen.data.pixels import pixel_values
from trendgen.model.build import load_saved
from trendgen.model.families import embedding_width, family_of, tokenize_texts
from trendgen.model.metrics import image_features, text_features

log = logging.getLogger(__name__)


@dataclass
class NoveltyReference:
    """Judge embeddings of training images and the nearest-training cosine of real held-out images."""

    train: torch.Tensor
    heldout_nearest: np.ndarray
    threshold: float


class FeatureCLIP(torch.nn.Module):
    """A CLIPModel whose `get_*_features` return tensors (transformers 5 returns model outputs), as
    torchmetrics' CLIPScore expects."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return image_features(self.model, pixel_values)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """CLIPScore tokenizes to the longest prompt: a SigLIP is given its full-length padding."""
        length = int(self.config.text_config.max_position_embeddings)
        if family_of(self.model).pads_to_max_length and input_ids.shape[1] < length:
            pad = int(self.config.text_config.pad_token_id)
            input_ids = F.pad(input_ids, (0, length - input_ids.shape[1]), value=pad)
            attention_mask = F.pad(attention_mask, (0, length - attention_mask.shape[1]), value=0)
        return text_features(self.model, input_ids, attention_mask)


class Judge:
    """A trendgen CLIP or SigLIP folder that scores generated images against the dataset's category
    prompts."""

    def __init__(self, folder: str | Path, category_prompts: Sequence[str], batch_size: int = 256) -> None:
        self.folder = str(folder)
        self.model, self.tokenizer, self.processor = load_saved(folder)
        self.model.eval().requires_grad_(False)
        self.category_prompts = list(category_prompts)
        self.batch_size = batch_size
        self.reference: NoveltyReference | None = None
        self._classes: torch.Tensor | None = None
        self._clip_score: Any = None

    @torch.no_grad()
    def embed(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """L2-normalised image embeddings [N, D]."""
        parts = []
        for start in range(0, len(images), self.batch_size):
            chunk = list(images[start : start + self.batch_size])
            pixels = pixel_values(self.processor, chunk)
            parts.append(F.normalize(image_features(self.model, pixels), dim=-1))
        return torch.cat(parts) if parts else torch.zeros(0, embedding_width(self.model))

    @torch.no_grad()
    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        max_length = self.model.config.text_config.max_position_embeddings
        tokens = tokenize_texts(self.model, self.tokenizer, prompts, max_length)
        return F.normalize(text_features(self.model, tokens["input_ids"], tokens["attention_mask"]), dim=-1)

    def classify(self, embeddings: torch.Tensor) -> np.ndarray:
        """Zero-shot category of each embedded image."""
        if self._classes is None:
            self._classes = self.embed_text(self.category_prompts)
        return (embeddings @ self._classes.T).argmax(dim=1).numpy()

    def set_reference(
        self, train: Sequence[Image.Image], heldout: Sequence[Image.Image], quantile: float
    ) -> NoveltyReference:
        """Embed training and real held-out images once; the near-copy threshold is a held-out quantile."""
        train_emb = self.embed(train)
        heldout_nearest = nearest_similarity(self.embed(heldout), train_emb)
        threshold = float(np.quantile(heldout_nearest, quantile))
        self.reference = NoveltyReference(train_emb, heldout_nearest, threshold)
        return self.reference

    def clip_score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> float:
        """torchmetrics CLIPScore of images against their prompts, on this judge's CLIP."""
        from torchmetrics.multimodal.clip_score import CLIPScore

        if self._clip_score is None:
            processor_class = family_of(self.model).processor_class
            processor = processor_class(image_processor=self.processor, tokenizer=self.tokenizer)
            self._clip_score = CLIPScore(
                model_name_or_path=lambda: (FeatureCLIP(self.model), processor),
                sync_on_compute=False,  # rank 0 scores alone; the other ranks wait at the broadcast
            )
        metric = self._clip_score
        metric.reset()
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            pixels = torch.stack(
                [torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1) for im in chunk]
            )
            metric.update(pixels, list(prompts[start : start + self.batch_size]))
        return float(metric.compute())

    def score(self, images: Sequence[Image.Image], category_ids: Sequence[int]) -> dict[str, float]:
        """Prompt fidelity (overall and per category), CLIP score and novelty of images drawn per category."""
        embeddings = self.embed(images)
        wanted = np.asarray(category_ids)
        hits = self.classify(embeddings) == wanted
        scores: dict[str, float] = {"prompt_fidelity": float(hits.mean())}
        for cat in sorted(set(wanted.tolist())):
            scores[f"prompt_fidelity/{cat}"] = float(hits[wanted == cat].mean())
        prompts = [self.category_prompts[c] for c in wanted]
        scores["clip_score"] = self.clip_score(images, prompts)
        if self.reference is not None:
            nearest = nearest_similarity(embeddings, self.reference.train)
            scores["nearest_train_similarity"] = float(nearest.mean())
            scores["heldout_nearest_train_similarity"] = float(self.reference.heldout_nearest.mean())
            scores["near_copy_rate"] = float((nearest > self.reference.threshold).mean())
        return scores


def at_resolution(dataset: Any, n: int, seed: int, processor: Any) -> list[Image.Image]:
    """Up to `n` images of a split as the generator sees them (through its `pixel_processor`)."""
    from trendgen.generator.pipeline import to_pil

    rows = np.random.default_rng(seed).permutation(len(dataset))[:n]
    images = [im for im in (dataset[int(r)]["image"] for r in rows) if im is not None]
    return to_pil(processor(images=images, return_tensors="pt")["pixel_values"]) if images else []


def judge_with_reference(
    folder: str | None, datamodule: Any, processor: Any, sampling: Any, seed: int
) -> Judge | None:
    """The judge CLIP in `folder` over the datamodule's category prompts, with its novelty reference (training
    and held-out images at the generator's resolution); None without a folder."""
    if not folder:
        log.info("no judge CLIP (sampling.judge): generator validation logs the loss and sample grids only")
        return None
    judge = Judge(folder, datamodule.category_prompts)
    data = datamodule.cfg
    train = at_resolution(
        datamodule.dataset(data.train_split), sampling.novelty_train_images, seed, processor
    )
    heldout = at_resolution(
        datamodule.dataset(data.val_split), sampling.novelty_heldout_images, seed, processor
    )
    if train and heldout:
        judge.set_reference(train, heldout, float(sampling.near_copy_quantile))
    return judge


def nearest_similarity(queries: torch.Tensor, gallery: torch.Tensor) -> np.ndarray:
    """Each query's cosine to its nearest gallery row (both L2-normalised), in chunks."""
    out = [
        (queries[start : start + 1024] @ gallery.T).max(dim=1).values
        for start in range(0, len(queries), 1024)
    ]
    return torch.cat(out).numpy() if out else np.zeros(0)


def sample_per_category(
    pipe: Any,
    prompts: Sequence[str],
    per_prompt: int,
    steps: int,
    guidance: float,
    seed: int,
    batch_size: int,
) -> tuple[list[Image.Image], list[int]]:
    """`per_prompt` images for each prompt (image j of prompt i has seed `seed + i * per_prompt + j`)."""
    jobs = [(i, seed + i * per_prompt + j) for i in range(len(prompts)) for j in range(per_prompt)]
    images: list[Image.Image] = []
    device = pipe.device
    gen_device = device if device.type == "cuda" else "cpu"
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        out = pipe(
            prompt=[prompts[i] for i, _ in chunk],
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=[torch.Generator(device=gen_device).manual_seed(s) for _, s in chunk],
        )
        images.extend(out.images)
    return images, [i for i, _ in jobs]


def image_grid(images: Sequence[Image.Image], columns: int) -> Image.Image:
    """Images in rows of `columns` (row i: the i-th prompt when sampled per prompt)."""
    w, h = images[0].size
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (columns * w, rows * h), "white")
    for k, image in enumerate(images):
        grid.paste(image.convert("RGB"), ((k % columns) * w, (k // columns) * h))
    return grid
