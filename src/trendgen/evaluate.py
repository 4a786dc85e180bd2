"""The evaluation recipe behind `trendgen-eval`: score a saved model folder on one split, write `eval.json`.

Scores: zero-shot top-1 accuracy and weighted F1 over the category prompts, image→text and text→image
recall@1/5/10 by item id (see `trendgen.model.metrics`), the number of images scored and the images skipped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import RichProgressBar

from trendgen.data.datamodule import FashionDataModule
from trendgen.hub import is_local
from trendgen.model.build import load_clip, load_saved
from trendgen.model.metrics import EVAL_KEYS, RECALL_KS
from trendgen.model.module import ClipFineTuner
from trendgen.wise_ft import eval_wise_ft, load_interpolated

log = logging.getLogger(__name__)


def load_model_for_eval(cfg: DictConfig) -> tuple[Any, Any, Any]:
    """CLIP, tokenizer and image processor to score: `model.name_or_path` (a saved folder, or with
    `model.pretrained=true` a hub id), or with `eval.wise_ft.start` and `eval.wise_ft.alpha` the WiSE-FT
    interpolation (1 - alpha) * start + alpha * that model (tokenizer and processor: that model's)."""
    name = str(cfg.model.name_or_path)
    hub_id = cfg.model.pretrained and not is_local(name)  # a hub id: the zero-shot baseline
    parts = load_clip(cfg.model) if hub_id else load_saved(name)
    wise = eval_wise_ft(cfg)
    if wise is None:
        return parts
    start, alpha = wise
    log.info("scoring the WiSE-FT interpolation at alpha %g between %s and %s", alpha, start, name)
    return load_interpolated(start, parts, alpha), parts[1], parts[2]


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate `model.name_or_path` on `data.split`; returns what it writes to eval.json.

    The model is a saved folder (e.g. a training run's `model/`) or, with `model.pretrained=true`, a hub id.
    """
    name = str(cfg.model.name_or_path)
    model, tokenizer, image_processor = load_model_for_eval(cfg)
    datamodule = FashionDataModule(
        cfg.data, tokenizer, image_processor, model.config.text_config.max_position_embeddings
    )
    module = ClipFineTuner(model, tokenizer, cfg.model, category_prompts=datamodule.category_prompts)
    trainer: pl.Trainer = instantiate(
        cfg.trainer, logger=False, callbacks=[RichProgressBar()], enable_checkpointing=False
    )
    trainer.test(
        module, datamodule=datamodule, verbose=False
    )  # the datamodule's test loader reads data.split
    logged = {k.removeprefix("test/"): float(v) for k, v in trainer.callback_metrics.items()}
    n_skipped, skipped = datamodule.skipped_files()

    result: dict[str, Any] = {key: logged.get(name) for name, key in EVAL_KEYS.items()}
    result.update(
        {
            "model": str(Path(name).resolve()) if is_local(name) else name,
            "data": OmegaConf.to_container(cfg.data, resolve=True)["name"],
            "split": cfg.data.split,
            "n_images": int(logged.get("n_images", 0)),
            "skipped": n_skipped,
            "skipped_images": [{"image": image, "reason": reason} for image, reason in skipped],
        }
    )
    if any(k.startswith("q2g_R@") for k in logged):  # query/gallery datasets (In-shop)
        result.update({f"query_to_gallery_recall@{k}": logged.get(f"q2g_R@{k}") for k in RECALL_KS})
    if eval_wise_ft(cfg) is not None:
        result["wise_ft"] = dict(zip(("start", "alpha"), eval_wise_ft(cfg), strict=True))
    out = Path(cfg.paths.output_dir) / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    summary = ", ".join(f"{k}={result[k]:.4f}" for k in EVAL_KEYS.values() if result[k] is not None)
    log.info("wrote %s: %s", out, summary)
    print(f"{summary}\nwrote {out}")
    return result
