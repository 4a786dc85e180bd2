"""Generate stage: draw new designs from the prompt with diffusers, then rerank them with the fine-tuned CLIP.

`generator=small_sd` loads a Stable Diffusion folder or hub id (`generator.name_or_path`) with a DPM-Solver
multistep scheduler, fp16 on CUDA only, optional attention slicing and model CPU offload.
`generator=trained` loads a folder `trendgen-train-generator` wrote (its pixel pipeline, or its LoRA on the
recorded base) and draws from the prompt in the words that generator learnt (`generator_text`).
`generator=tiny` loads the tiny random pipeline `trendgen.generator.tiny_random` builds and saves locally.
`generator=none` draws nothing. All `generator.num_images` designs are drawn in one batched call, design i
with seed `generator.seed + i`. Every PNG carries its prompt, seed and the run's config hash in its text
chunks. Rerank: CLIP scores each design by its mean cosine similarity to the target centroid and to the top
captions; designs are listed best first.

Artifacts (in `<output_dir>/generate/`): `designs/*.png` (never overwriting a file) and `designs.json`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from trendgen.data.pixels import pixel_values
from trendgen.design.results import ClusterResult, DescribeResult, GenerateResult, PromptResult
from trendgen.design.store import Stage
from trendgen.errors import TrendgenError, first_line
from trendgen.files import inside
from trendgen.identity import config_subset
from trendgen.inference.clip_forward import CLIP_TOKEN_LIMIT, embed_pixels, pick_device
from trendgen.inference.precision import Tower, torch_tower

log = logging.getLogger(__name__)

DESIGNS = "designs.json"


def tiny_source(gen: Any, cache_dir: str | Path, bank_texts: list[str]) -> str:
    """The tiny random pipeline's saved folder (its tokenizer learnt from the bank)."""
    from trendgen.generator.tiny_random import tiny_pipeline_folder

    return str(tiny_pipeline_folder(cache_dir, bank_texts))


def trained_source(gen: Any, cache_dir: str | Path, bank_texts: list[str]) -> str:
    """A trendgen-trained generator folder; one that is not a trendgen generator fails here, at once."""
    from trendgen.generator.export import read_record

    read_record(str(gen.name_or_path))
    return str(Path(str(gen.name_or_path)).expanduser())


def stable_diffusion_source(gen: Any, cache_dir: str | Path, bank_texts: list[str]) -> str:
    """A Stable Diffusion hub id or folder (`generator.name_or_path`)."""
    if not gen.name_or_path:
        raise TrendgenError("generator.name_or_path is not set (a Stable Diffusion hub id or folder)")
    return str(gen.name_or_path)


def trained_record(source: str) -> dict[str, Any] | None:
    """The generator.json of a trendgen-trained generator folder, None for any other source."""
    from trendgen.generator.export import RECORD, read_record

    return read_record(source) if (Path(source) / RECORD).is_file() else None


def generator_tokenizer(source: str) -> tuple[Any, int]:
    """The generator's own tokenizer and its text-encoder limit (77 CLIP tokens at most)."""
    from transformers import AutoTokenizer

    record = trained_record(source)
    if record is not None and record["kind"] == "lora":
        source = record["base"]  # a LoRA uses its base's tokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, subfolder="tokenizer")
    except (OSError, ValueError) as err:
        raise TrendgenError(
            f"cannot load the generator's tokenizer from {source!r}: {first_line(err)}"
        ) from None
    limit = int(min(tokenizer.model_max_length or CLIP_TOKEN_LIMIT, CLIP_TOKEN_LIMIT))
    return tokenizer, limit


@dataclass(frozen=True)
class GeneratorLanguage:
    """What a trained pixel generator read in training: the words of its captions and (when recorded) the
    captions themselves. None for a generator with an open vocabulary (Stable Diffusion, a LoRA on it)."""

    vocabulary: list[str] | None = None
    captions: list[str] | None = None


def generator_language(source: str | None) -> GeneratorLanguage:
    """The language of the generator at `source` (see GeneratorLanguage)."""
    record = trained_record(source) if source else None
    if not record:
        return GeneratorLanguage()
    return GeneratorLanguage(record.get("vocabulary"), record.get("captions"))


def pipeline_dtype(gen: Any, device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" and gen.half_precision_on_cuda else torch.float32


def load_trained(gen: Any, source: str, device: torch.device) -> Any:
    """The pipeline of a trendgen-trained generator folder (its pixel pipeline, or its LoRA on its base)."""
    from trendgen.generator.export import load_generator

    pipe = load_generator(source, device, pipeline_dtype(gen, device))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_stable_diffusion(gen: Any, source: str, device: torch.device) -> Any:
    """StableDiffusionPipeline.from_pretrained with DPM-Solver, fp16 on CUDA only, slicing and offload."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    from trendgen.generator.pipeline import dtype_keyword  # diffusers: imported by the stage that draws

    dtype = pipeline_dtype(gen, device)
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            source, revision=gen.get("revision"), **{dtype_keyword(): dtype}
        )
    except (OSError, ValueError) as err:
        raise TrendgenError(f"cannot load the diffusion pipeline {source!r}: {first_line(err)}") from None
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    if gen.attention_slicing:
        pipe.enable_attention_slicing()
    if gen.cpu_offload and device.type == "cuda":
        try:
            pipe.enable_model_cpu_offload()
        except (ImportError, RuntimeError) as err:
            raise TrendgenError(f"generator.cpu_offload: {first_line(err)}") from None
    else:
        if gen.cpu_offload:
            log.info("generator.cpu_offload has no effect without CUDA")
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe: Any, prompt: str, gen: Any, device: torch.device) -> tuple[list[Image.Image], list[int]]:
    """`generator.num_images` designs in one batched call; design i uses seed `generator.seed + i`."""
    seeds = [int(gen.seed) + i for i in range(int(gen.num_images))]
    generator_device = "cpu" if device.type != "cuda" else device
    generators = [torch.Generator(device=generator_device).manual_seed(s) for s in seeds]
    out = pipe(
        prompt=[prompt] * len(seeds),
        negative_prompt=[gen.negative_prompt] * len(seeds) if gen.negative_prompt else None,
        num_inference_steps=int(gen.steps),
        guidance_scale=float(gen.guidance),
        height=int(gen.height) if gen.height else None,
        width=int(gen.width) if gen.width else None,
        generator=generators,
    )
    return list(out.images), seeds


def unique_path(folder: Path, stem: str) -> Path:
    """folder/stem.png, or stem-2.png, stem-3.png... when taken: an existing file is never overwritten."""
    path, n = folder / f"{stem}.png", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.png"
    return path


def save_design(image: Image.Image, path: Path, text: dict[str, str]) -> None:
    """Save a PNG with the given text chunks (UTF-8 iTXt), refusing to replace an existing file."""
    info = PngInfo()
    for key, value in text.items():
        info.add_itxt(key, value)
    with open(path, "xb") as handle:
        image.save(handle, format="PNG", pnginfo=info)


@torch.inference_mode()
def rerank(
    clip: Any,
    images: list[Image.Image],
    centroid: np.ndarray,
    top_text: np.ndarray,
    tower: Tower | None = None,
) -> list[dict[str, float]]:
    """Per design: cosine to the target centroid, mean cosine to the top captions, and their mean (score).

    `tower`: the image tower at the run's precision (the embed stage's); without one, fp32 torch."""
    _model, _tokenizer, image_processor = clip
    tower = tower or torch_tower(clip[0])
    device = pick_device()
    model = tower.model.eval().to(device)
    pixels = pixel_values(image_processor, images)
    feats = embed_pixels(model, pixels, device, tower.autocast).numpy()
    to_centroid = feats @ (centroid / max(float(np.linalg.norm(centroid)), 1e-12))
    to_captions = (feats @ top_text.T).mean(axis=1) if len(top_text) else to_centroid
    return [
        {"score": float((a + b) / 2), "centroid_similarity": float(a), "caption_similarity": float(b)}
        for a, b in zip(to_centroid, to_captions, strict=True)
    ]


def run(
    gen: Any,
    clip: Any,
    source: str | None,
    prompt: dict[str, Any],
    centroid: np.ndarray,
    top_text: np.ndarray,
    config_hash: str,
    stage_key: str,
    stage_dir: Path,
    tower: Tower | None = None,
) -> list[str]:
    """Draw, save and rerank the designs into `stage_dir` with `generator` (`gen`); returns the files
    written."""
    designs: list[dict[str, Any]] = []
    files: list[str] = []
    reranked_by = None
    kind = generator_kind(gen)
    if kind.draws and int(gen.num_images) > 0:
        device = pick_device()
        pipe = kind.load(gen, str(source), device)
        images, seeds = draw(pipe, prompt.get("generator_text") or prompt["text"], gen, device)
        del pipe
        scores = rerank(clip, images, centroid, top_text, tower)
        reranked_by = (tower or torch_tower(clip[0])).record
        folder = stage_dir / "designs"
        folder.mkdir(parents=True, exist_ok=True)
        for image, seed, score in zip(images, seeds, scores, strict=True):
            path = unique_path(folder, f"design-{stage_key[:8]}-seed{seed}")
            chunks = {
                "prompt": prompt["text"],
                "generator_prompt": prompt.get("generator_text") or prompt["text"],
                "seed": str(seed),
                "config_hash": config_hash,
                "generator": gen.name,
            }
            save_design(image, path, chunks)
            rel = str(path.relative_to(stage_dir))
            files.append(rel)
            designs.append({"path": str(path), "file": rel, "seed": seed, **score})
        designs.sort(key=lambda d: -d["score"])
    record = {"generator": gen.name, "source": source, "prompt": prompt["text"], "designs": designs}
    record["precision"] = reranked_by  # what ran the rerank's image tower (None: nothing drawn)
    (stage_dir / DESIGNS).write_text(json.dumps(record, indent=1))
    return [DESIGNS, *files]


def load(stage_dir: Path) -> GenerateResult:
    """The designs record; paths point into this run's stage folder (maybe restored from the store)."""
    record = json.loads((stage_dir / DESIGNS).read_text())
    for design in record["designs"]:
        design["path"] = str(inside(stage_dir, design["file"], f"{stage_dir / DESIGNS}"))
    return GenerateResult(record)


def _run_stage(design: Any, folder: Path) -> tuple[list[str], dict[str, Any]]:
    clusters: ClusterResult = design.results["cluster"]
    described: DescribeResult = design.results["describe"]
    prompt: PromptResult = design.results["prompt"]
    drawn = generator_kind(design.cfg.generator).draws and int(design.cfg.generator.num_images) > 0
    tower = design.towers.tower("image") if drawn else None
    files = run(
        design.cfg.generator,
        design.clip,
        design.generator_source(),
        prompt.record,
        clusters.target_centroid,
        described.top_text,
        design.config_hash,
        design.keys["generate"],
        folder,
        tower,
    )
    return files, ({"precision": tower.record, **tower.info} if tower else {})


STAGE = Stage(
    "generate",
    inputs=("cluster", "describe", "prompt"),  # the target centroid, the top captions, the prompt
    settings=lambda design: {
        "generator": config_subset(design.cfg.generator, list(design.cfg.generator.keys())),
        "weights": design.generator_id,
        "bank": design.bank_id if generator_kind(design.cfg.generator).reads_bank else None,
        "reranker": design.model_id,
        "rerank_precision": design.towers.precision,
    },
    run=_run_stage,
    load=load,
)


@dataclass(frozen=True)
class GeneratorKind:
    """What a `generator=` choice is: where its pipeline comes from and how it loads.

    `source(gen, cache_dir, bank_texts)` says where the pipeline loads from (and refuses a wrong one at
    once); `load(gen, source, device)` loads it; `reads_bank`: its tokenizer is learnt from the caption bank,
    so the bank is part of what it is; `check_at_start`: its source is checked before any stage runs (cheap
    and often mistyped: a trained generator's folder). A kind without `source` draws nothing."""

    name: str
    source: Callable[[Any, str | Path, list[str]], str] | None = None
    load: Callable[[Any, str, torch.device], Any] | None = None
    reads_bank: bool = False
    check_at_start: bool = False

    @property
    def draws(self) -> bool:
        return self.source is not None


GENERATORS: dict[str, GeneratorKind] = {
    "small_sd": GeneratorKind("small_sd", stable_diffusion_source, load_stable_diffusion),
    "trained": GeneratorKind("trained", trained_source, load_trained, check_at_start=True),
    "tiny": GeneratorKind("tiny", tiny_source, load_stable_diffusion, reads_bank=True),
    "none": GeneratorKind("none"),
}


def generator_kind(gen: Any) -> GeneratorKind:
    """The kind `generator.name` chooses; an unknown name is one line."""
    if gen.name not in GENERATORS:
        raise TrendgenError(f"generator.name must be one of {', '.join(GENERATORS)}, not {gen.name!r}")
    return GENERATORS[gen.name]
