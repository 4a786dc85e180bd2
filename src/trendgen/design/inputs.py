"""What the design pipeline checks and identifies before any stage runs: stages asked for, the synthetic demo
set, the CLIP and generator it uses (a folder's files, or a hub id at its resolved revision) and k."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from trendgen.errors import TrendgenError, first_line
from trendgen.hub import is_local, resolved_revision
from trendgen.identity import folder_identity
from trendgen.trends.periods import trend_periods

log = logging.getLogger(__name__)


def requested_stages(cfg: Any, order: list[str]) -> list[str]:
    """`design.stages`, checked against the stage names (`order`) and put in their order."""
    names = [str(s) for s in cfg.design.stages]
    unknown = [s for s in names if s not in order]
    if unknown:
        raise TrendgenError(f"design.stages: unknown stage(s) {unknown}; choose from {order}")
    if not names:
        raise TrendgenError("design.stages is empty")
    return [s for s in order if s in names]


def prepare_synthetic_trend(cfg: Any) -> None:
    """Draw the synthetic trend (and baseline) set when `trend.synthetic` is set and a folder is missing."""
    syn = cfg.trend.synthetic
    if syn is None:
        return
    from trendgen.data.synthetic import write_trend_folder

    planted = dict(syn.planted) or None
    wanted = [(cfg.trend.images, syn.n, syn.planted_share, syn.seed)]
    if cfg.trend.baseline_images and syn.baseline_n > 0:
        wanted.append((cfg.trend.baseline_images, syn.baseline_n, syn.baseline_planted_share, syn.seed + 1))
    for folder, n, share, seed in wanted:
        if folder and not Path(str(folder)).exists():
            log.info("drawing %d synthetic looks (%.0f%% planted) into %s", n, 100 * share, folder)
            write_trend_folder(
                Path(str(folder)), n=n, planted=planted, planted_share=share, seed=seed, px=syn.px
            )


def uses_folder(model_cfg: Any) -> bool:
    """The design CLIP is a saved folder (always, for a model trendgen built), else a hub id."""
    return is_local(str(model_cfg.name_or_path)) or not model_cfg.pretrained


def model_identity(model_cfg: Any) -> list[Any]:
    """The CLIP's identity for the stage keys: a folder's files, or a hub id at its resolved revision.

    A missing or unreadable model folder is a user error, said at once.
    """
    name = str(model_cfg.name_or_path)
    if str(model_cfg.get("library", "transformers")) == "open_clip" and not uses_folder(model_cfg):
        name = name.removeprefix("local-dir:")  # open_clip's folder schema
        if not is_local(name):  # a built-in name and tag, or hf-hub:ORG/REPO at a revision
            return ["open_clip", name, model_cfg.get("pretrained_tag"), model_cfg.get("revision")]
    elif not uses_folder(model_cfg):
        revision = model_cfg.get("revision")
        return ["hub", name, revision, resolved_revision(name, revision)]
    path = Path(name).expanduser()
    if not path.is_dir():
        raise TrendgenError(
            f"model.name_or_path: model folder not found: {path} "
            "(point it at the model/ folder a trendgen-train run saved)"
        )
    config = next((path / c for c in ("config.json", "open_clip_config.json") if (path / c).is_file()), None)
    if config is None:
        raise TrendgenError(f"model.name_or_path: {path} is not a saved model folder (no config.json)")
    try:
        json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise TrendgenError(f"model.name_or_path: unreadable {config}: {err}") from None
    return folder_identity(path)


def generator_identity(gen: Any) -> list[Any] | None:
    """What the generator loads, for the prompt and generate keys: a folder's files or a hub revision."""
    if gen.name not in ("trained", "small_sd") or not gen.name_or_path:
        return None  # none, or tiny: built from the caption bank, which the keys cover
    name = str(gen.name_or_path)
    if is_local(name):
        return folder_identity(Path(name).expanduser())
    revision = gen.get("revision")
    return ["hub", name, revision, resolved_revision(name, revision)]


def check_cluster_count(trend: Any, periods: list[Any] | None = None) -> None:
    """k larger than the number of image files can never work: say so before any image is decoded.
    `periods`: `trend_periods(trend)` when the caller listed them already."""
    setting = str(trend.clusters).strip().lower()
    if setting == "auto" or not setting.lstrip("-").isdigit():
        return
    total = sum(len(p.files) for p in (periods if periods is not None else trend_periods(trend)))
    if int(setting) > total:
        raise TrendgenError(f"trend.clusters={setting} is more than the {total} images given: lower k")


def check_inputs(cfg: Any) -> None:
    """The user's paths, before any heavy import: the synthetic set drawn where asked, the CLIP folder, the
    photos (listed once here, again by the embed stage) and k against them. A problem is one TrendgenError."""
    prepare_synthetic_trend(cfg)
    model_identity(cfg.model)
    check_cluster_count(cfg.trend, trend_periods(cfg.trend))


def load_design_clip(model_cfg: Any) -> Any:
    """(model, tokenizer, image processor): a saved folder, or a pretrained hub id (CLIP or SigLIP)."""
    from trendgen.model.build import load_clip, load_saved

    name = str(model_cfg.name_or_path)
    try:
        folder = uses_folder(model_cfg) and not name.startswith("local-dir:")
        return load_saved(Path(name).expanduser()) if folder else load_clip(model_cfg)
    except TrendgenError:
        raise
    except Exception as err:  # corrupt weights raise the loader's own errors (e.g. SafetensorError)
        raise TrendgenError(
            f"model.name_or_path: could not load a CLIP model from {name}: {first_line(err)}"
        ) from err
