"""`trendgen-eval mode=generator`: score any generator folder on a dataset's category prompts.

Draws `sampling.samples_per_prompt` images for each category prompt of `data` and scores them with the judge
CLIP `model.name_or_path` (prompt fidelity, CLIP score, near-copy rate against `data`'s training images, see
`trendgen.generator.metrics`). Writes `eval_generator.json` and `samples.png` (a row per prompt) into the run
dir.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from trendgen.data.datamodule import FashionDataModule
from trendgen.errors import TrendgenError
from trendgen.files import write_text
from trendgen.generator.export import load_generator, read_record
from trendgen.generator.metrics import image_grid, judge_with_reference, sample_per_category
from trendgen.generator.pipeline import pixel_processor

log = logging.getLogger(__name__)

RESULT = "eval_generator.json"


def evaluate_generator(cfg: DictConfig) -> dict[str, Any]:
    """Sample, score and record the generator `generator_path`; returns what eval_generator.json holds."""
    if not cfg.get("generator_path"):
        raise TrendgenError("mode=generator needs generator_path=<the generator/ folder of a training run>")
    folder = Path(str(cfg.generator_path)).expanduser()
    record = read_record(folder)
    judge_folder = Path(str(cfg.model.name_or_path)).expanduser()
    if not (judge_folder / "config.json").is_file():
        raise TrendgenError(
            f"model.name_or_path: {judge_folder} is not a CLIP folder; mode=generator needs the judge CLIP "
            "(e.g. the model/ of trendgen-train experiment=fashion_mnist)"
        )
    if int(cfg.sampling.samples_per_prompt) < 1:
        raise TrendgenError("sampling.samples_per_prompt must be at least 1")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipe = load_generator(folder, device, torch.float32)
    pipe.set_progress_bar_config(disable=True)
    datamodule = FashionDataModule(cfg.data)
    resolution = int(record.get("resolution") or pipe.unet.config.sample_size)
    s = cfg.sampling
    judge = judge_with_reference(str(judge_folder), datamodule, pixel_processor(resolution), s, cfg.seed)
    prompts = datamodule.category_prompts
    images, category_ids = sample_per_category(
        pipe,
        prompts,
        int(s.samples_per_prompt),
        int(s.steps),
        float(s.guidance),
        int(s.seed),
        int(s.batch_size),
    )
    scores = judge.score(images, category_ids)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_grid(images, int(s.samples_per_prompt)).save(out / "samples.png")
    result = {
        **scores,
        "generator": str(folder.resolve()),
        "judge": str(cfg.model.name_or_path),
        "data": str(cfg.data.name),
        "prompts": prompts,
        "samples_per_prompt": int(s.samples_per_prompt),
        "steps": int(s.steps),
        "guidance": float(s.guidance),
        "near_copy_threshold": judge.reference.threshold if judge.reference else None,
    }
    write_text(out / RESULT, json.dumps(result, indent=2) + "\n")
    summary = ", ".join(
        f"{k}={scores[k]:.4f}" for k in ("prompt_fidelity", "clip_score", "near_copy_rate") if k in scores
    )
    print(f"{summary}\nwrote {out / RESULT}")
    return result
