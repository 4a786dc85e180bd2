"""Embed stage: every trending (and baseline) image through CLIP's image tower, in batches, resumable.

The files are embedded in parts of `trend.part_batches` batches (`trendgen.embed_parts`); each finished part
is written to `embed/parts/` at once, so a run killed halfway (`kill -9`, a preempted job) is picked up by the
next run with the same key: the parts on disk are reused and only the rest is embedded, by one process or by
several ranks (`trend.devices`, srun, torchrun: `trendgen.embed_distributed`), with the embeddings of a run
that was never stopped.

Artifacts (in `<output_dir>/embed/`): `embeddings.npy` (float32, L2-normalised, one row per used image, in
index order) and `index.json` (`paths`, `sets` (current | baseline) per row, `skipped` [{path, reason}],
`totals` per set, `reused_from_parts`: files a resumed run took from an interrupted one, `precision`: what ran
the image tower, see `trendgen.precision`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trendgen.clip_inference import embed_batches, image_loader, pick_device
from trendgen.embed_parts import Embedded, PartAssembler, PartStore
from trendgen.errors import TrendgenError
from trendgen.image_files import input_files, trend_files
from trendgen.precision import Tower, torch_tower
from trendgen.stage_cache import Stage, files_identity

EMBEDDINGS = "embeddings.npy"
INDEX = "index.json"
PARTS = "parts"


def embed_resumable(
    model: Any,
    image_processor: Any,
    paths: Sequence[str | Path],
    store: PartStore,
    precision: str = "32",
    **loader_args: Any,
) -> Embedded:
    """Embed the files of the parts not on disk yet, in one process, saving each part as it is done."""
    todo = store.todo()
    if todo:
        device = pick_device()
        model.eval().to(device)
        remaining = [i for p in todo for i in store.files_of(p)]
        loader = image_loader(paths, image_processor, indices=remaining, **loader_args)
        assembler = PartAssembler(store)
        description = f"embedding {len(remaining)} of {len(paths)} images"
        for batch in embed_batches(model, loader, device, description, precision):
            assembler.add(batch)
    return store.collect()


def run(
    cfg: Any, clip: Any, stage_dir: Path, key: str, group: Any = None, tower: Tower | None = None
) -> tuple[list[str], dict]:
    """Embed `trend.images` (and `trend.baseline_images`) into `stage_dir`; returns the files written.

    `group`: the `EmbedGroup` of ranks srun or torchrun started, which share the work; without one,
    `trend.devices > 1` starts that many ranks here (`ddp_spawn`). `tower`: the image tower at the run's
    precision (`ClipTowers.tower("image")`); without one, the torch model in fp32.
    """
    _model, _tokenizer, image_processor = clip
    tower = tower or torch_tower(clip[0])
    model, precision = tower.model, tower.autocast
    current, baseline = trend_files(cfg.trend)
    paths = [*current, *baseline]
    sets = ["current"] * len(current) + ["baseline"] * len(baseline)
    loader_args = {"batch_size": int(cfg.trend.batch_size), "num_workers": int(cfg.trend.num_workers)}
    part_size = loader_args["batch_size"] * int(cfg.trend.part_batches)
    store = PartStore.for_job(stage_dir / PARTS, key, part_size, len(paths))
    reused = sum(len(store.files_of(p)) for p in range(store.count) if store.load(p) is not None)
    if group is not None:
        embeddings, used, skipped = group.embed(
            model, image_processor, paths, store, precision, **loader_args
        )
    elif cfg.trend.get("devices", 1) > 1:  # one process per device, started here; this one collects
        from trendgen.embed_distributed import embed_files_distributed

        embeddings, used, skipped = embed_files_distributed(
            model,
            image_processor,
            paths,
            store,
            **loader_args,
            precision=precision,
            devices=int(cfg.trend.devices),
            strategy="ddp_spawn",
        )
    else:
        embeddings, used, skipped = embed_resumable(
            model, image_processor, paths, store, precision, **loader_args
        )
    used_current = sum(1 for i in used if sets[i] == "current")
    if used_current == 0:
        raise TrendgenError(
            f"trend.images: none of the {len(current)} files could be used as an image "
            f"(first reason: {skipped[0][1] if skipped else 'unknown'})"
        )
    if baseline and len(used) == used_current:
        raise TrendgenError(f"trend.baseline_images: none of the {len(baseline)} files could be used")
    index = {
        "paths": [str(paths[i]) for i in used],
        "sets": [sets[i] for i in used],
        "skipped": [{"path": str(paths[i]), "reason": reason, "set": sets[i]} for i, reason in skipped],
        "totals": {"current": len(current), "baseline": len(baseline)},
        "reused_from_parts": reused,
        "precision": tower.record,
    }
    np.save(stage_dir / EMBEDDINGS, embeddings)
    (stage_dir / INDEX).write_text(json.dumps(index, indent=1))
    shutil.rmtree(stage_dir / PARTS, ignore_errors=True)  # the whole result is written: parts are done
    return [EMBEDDINGS, INDEX], {"reused_from_parts": reused, "precision": tower.record, **tower.info}


def load(stage_dir: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The embeddings and index an earlier run of this stage wrote."""
    return np.load(stage_dir / EMBEDDINGS), json.loads((stage_dir / INDEX).read_text())


def _settings(design: Any) -> dict[str, Any]:
    trend = design.cfg.trend
    return {
        "model": design.model_id,
        "images": str(trend.images),
        "baseline_images": str(trend.baseline_images),
        "files": files_identity(input_files(trend)),
        "precision": design.towers.precision,  # what `auto` resolved to: embeddings of two never mix
    }


STAGE = Stage(
    "embed",
    inputs=(),
    settings=_settings,
    run=lambda design, folder: run(
        design.cfg, design.clip, folder, design.keys["embed"], design.group, design.towers.tower("image")
    ),
    load=load,
)
