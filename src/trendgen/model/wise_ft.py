"""WiSE-FT (Wortsman et al., 2022): the weight-space interpolation theta = (1 - a) * start + a * fine-tuned.

After fine-tuning with `model.wise_ft.alphas=[...]`, `run_wise_ft` validates the interpolation at each alpha,
picks one (`model.wise_ft.export_alpha`, or else the best on val by the run's checkpoint monitor, e.g. the
lowest `val/loss`), tests it when there is a test split, and writes it to `model/`; every other alpha goes
to `wise_ft/alpha_<a>/`, and the fine-tuned weights themselves (alpha 1) to `wise_ft/alpha_1/` unless alpha 1
was chosen. `metrics.json` then holds the chosen weights' val/ and test/ scores, and under `wise_ft` each
alpha's val scores, the choice and the fine-tuned weights' own scores.

The start is the model as built before training (the pretrained weights, or the seeded random init); with
LoRA, the fine-tuned weights are the merged ones, so alpha scales the adapters' update.
`trendgen-eval eval.wise_ft.start=<folder> eval.wise_ft.alpha=<a>` scores one interpolation of two folders.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import Tensor
from transformers import PreTrainedModel

from trendgen.errors import TrendgenError
from trendgen.files import replace_dir, temp_sibling

log = logging.getLogger(__name__)

StateDict = dict[str, Tensor]


def check_alpha(alpha: float, what: str = "alpha") -> float:
    value = float(alpha)
    if not 0.0 <= value <= 1.0:
        raise TrendgenError(f"{what}={alpha}: WiSE-FT alphas lie in [0, 1] (0 the start, 1 the fine-tuned)")
    return value


def check_compatible(start: StateDict, finetuned: StateDict) -> None:
    """Refuse two state dicts that are not the same architecture (keys and shapes), in one message."""
    missing, extra = sorted(set(finetuned) - set(start)), sorted(set(start) - set(finetuned))
    if missing or extra:
        name, where = (missing[0], "start") if missing else (extra[0], "fine-tuned model")
        raise TrendgenError(
            f"WiSE-FT needs two models of one architecture: {name} is missing from the {where} "
            f"({len(missing) + len(extra)} weights differ)"
        )
    for name, value in finetuned.items():
        if start[name].shape != value.shape:
            raise TrendgenError(
                f"WiSE-FT needs two models of one architecture: {name} is {tuple(start[name].shape)} in the "
                f"start and {tuple(value.shape)} in the fine-tuned model"
            )


def interpolate(start: StateDict, finetuned: StateDict, alpha: float) -> StateDict:
    """(1 - alpha) * start + alpha * finetuned per weight; alpha 0 and 1 give exact copies of the endpoints.

    Integer buffers (e.g. position ids) must agree and are taken as they are.
    """
    alpha = check_alpha(alpha)
    check_compatible(start, finetuned)
    out: StateDict = {}
    for name, end in finetuned.items():
        begin = start[name]
        if alpha == 0.0:
            out[name] = begin.detach().clone()
        elif alpha == 1.0 or not end.is_floating_point():
            if not end.is_floating_point() and not torch.equal(begin, end):
                raise TrendgenError(f"WiSE-FT: the non-float buffer {name} differs between the two models")
            out[name] = end.detach().clone()
        else:
            mixed = (1.0 - alpha) * begin.detach().double() + alpha * end.detach().double()
            out[name] = mixed.to(end.dtype)
    return out


def interpolated_model(start: StateDict, finetuned: PreTrainedModel, alpha: float) -> PreTrainedModel:
    """A copy of `finetuned` holding the interpolation at `alpha`."""
    model = copy.deepcopy(finetuned)
    model.load_state_dict(interpolate(start, finetuned.state_dict(), alpha))
    return model


def alpha_name(alpha: float) -> str:
    """The folder of an alpha: alpha_0.25, alpha_0.5, alpha_1."""
    return f"alpha_{alpha:g}"


def start_weights(model: PreTrainedModel) -> StateDict:
    """A detached CPU copy of the weights to interpolate from (taken before training)."""
    return {name: value.detach().to("cpu", copy=True) for name, value in model.state_dict().items()}


def monitor_of(trainer: pl.Trainer) -> tuple[str, str] | None:
    """(metric, min|max) of the run's monitoring ModelCheckpoint, if any."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor:
            return str(callback.monitor), str(callback.mode)
    return None


def check_wise_ft(cfg: Any, trainer: pl.Trainer) -> list[float]:
    """The configured alphas (empty: off), checked before training; the export alpha joins them."""
    wise = cfg.get("wise_ft")
    alphas = [check_alpha(a, "model.wise_ft.alphas") for a in (wise.alphas if wise else [])]
    if not alphas:
        return []
    if wise.export_alpha is not None:
        chosen = check_alpha(wise.export_alpha, "model.wise_ft.export_alpha")
        alphas = alphas if chosen in alphas else [*alphas, chosen]
    elif monitor_of(trainer) is None:
        raise TrendgenError(
            "model.wise_ft.alphas without model.wise_ft.export_alpha picks the best alpha by the checkpoint "
            "monitor, but no ModelCheckpoint monitors a metric: set model.wise_ft.export_alpha"
        )
    return list(dict.fromkeys(alphas))


def _choose(scores: dict[float, dict[str, float]], wise: Any, trainer: pl.Trainer) -> tuple[float, str]:
    if wise.export_alpha is not None:
        return float(wise.export_alpha), "model.wise_ft.export_alpha"
    monitor = monitor_of(trainer)
    assert monitor is not None  # check_wise_ft refused this before training
    metric, mode = monitor
    valued = {a: s[metric] for a, s in scores.items() if metric in s and math.isfinite(s[metric])}
    if not valued:
        raise TrendgenError(f"WiSE-FT: no alpha has a finite {metric} to choose by")
    pick = min if mode == "min" else max
    return pick(valued, key=valued.__getitem__), f"{mode} {metric} on val"


def run_wise_ft(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    start: StateDict,
    alphas: list[float],
    save: Any,
    output_dir: Path,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """Validate each alpha, export the chosen one to model/ and the rest to wise_ft/; returns metrics.

    Runs on every rank (validation is distributed); `save(folder, model)` writes a model folder (rank 0).
    `module` holds the exported fine-tuned weights (see `trendgen.training.fit.fit_and_export`).
    """
    from trendgen.model.module import ClipFineTuner

    finetuned = module.export_model()
    check_compatible(start, finetuned.state_dict())
    # a plain copy scores the interpolations: no adapters, every weight "trainable" so DDP can wrap it
    every_block = {"vision_trainable_blocks": -1, "text_trainable_blocks": -1}
    plain_cfg = OmegaConf.merge(module.cfg, {"lora": {"enabled": False}, "freeze": every_block})
    scorer = ClipFineTuner(copy.deepcopy(finetuned), module.tokenizer, plain_cfg, module.category_prompts)
    finetuned_state = {k: v.detach().clone() for k, v in finetuned.state_dict().items()}
    scores: dict[float, dict[str, float]] = {}
    for alpha in alphas:
        scorer.model.load_state_dict(interpolate(start, finetuned_state, alpha))
        trainer.validate(scorer, datamodule=datamodule, verbose=False)
        scores[alpha] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        log.info("WiSE-FT alpha %g: %s", alpha, scores[alpha])
    wise = module.cfg.wise_ft
    chosen, chosen_by = _choose(scores, wise, trainer)
    scorer.model.load_state_dict(interpolate(start, finetuned_state, chosen))
    tested: dict[str, float] = {}
    if getattr(datamodule, "has_test_split", lambda: False)():
        trainer.test(scorer, datamodule=datamodule, verbose=False)
        tested = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}

    model_dir, wise_dir = output_dir / "model", output_dir / "wise_ft"
    folders: dict[str, str] = {}
    if trainer.is_global_zero:
        wise_dir.mkdir(parents=True, exist_ok=True)
        for alpha in alphas:
            if alpha in (chosen, 1.0):
                continue
            folder = wise_dir / alpha_name(alpha)
            save(folder, interpolated_model(start, finetuned, alpha))
            folders[alpha_name(alpha)] = str(folder)
        if chosen != 1.0:  # model/ holds the fine-tuned weights (fit exported them): keep them as alpha_1
            finetuned_dir = wise_dir / alpha_name(1.0)
            staged = temp_sibling(model_dir, "partial")
            save(staged, scorer.model)  # the chosen weights, whole, first
            replace_dir(model_dir, finetuned_dir)  # each folder is moved whole: none is ever half-written
            replace_dir(staged, model_dir)
            folders[alpha_name(1.0)] = str(finetuned_dir)
        log.info("WiSE-FT: model/ holds alpha %g (by %s); the others are in %s", chosen, chosen_by, wise_dir)

    own = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
    updated = {k: v for k, v in metrics.items() if not k.startswith(("val/", "test/"))}
    updated.update(scores[chosen])
    updated.update(tested)
    updated["wise_ft"] = {
        "alphas": {alpha_name(a): s for a, s in scores.items()},
        "chosen": chosen,
        "chosen_by": chosen_by,
        "folders": {"model": str(model_dir), **folders},
        "finetuned": own,
    }
    return updated


def load_interpolated(
    start: str, finetuned_parts: tuple[PreTrainedModel, Any, Any], alpha: float
) -> PreTrainedModel:
    """The interpolation between the model at `start` (a folder or hub id) and an already-loaded fine-tuned
    model, for `trendgen-eval eval.wise_ft.*`; tokenizer and processor stay the fine-tuned model's."""
    from trendgen.model.build import load_pretrained

    alpha = check_alpha(alpha, "eval.wise_ft.alpha")
    start_model = load_pretrained(start)[0]
    return interpolated_model(start_weights(start_model), finetuned_parts[0], alpha)


def eval_wise_ft(cfg: DictConfig) -> tuple[str, float] | None:
    """(start, alpha) from `eval.wise_ft`, or None when no start is set."""
    node = OmegaConf.select(cfg, "eval.wise_ft")
    if node is None or node.get("start") in (None, ""):
        return None
    if node.get("alpha") is None:
        raise TrendgenError("eval.wise_ft.start is set: give eval.wise_ft.alpha too (0 start, 1 fine-tuned)")
    return str(node.start), float(node.alpha)
