"""Embed stage: the photos of every period through CLIP's image tower, in batches, resumable.

The files are embedded in parts of `trend.part_batches` batches (`trendgen.design.embed_parts`); each
finished part is written to `embed.parts/` beside the stage folder at once, so a run killed halfway (`kill
-9`, a preempted job) is picked up by the next run with the same key: the parts on disk are reused and only
the rest is embedded, by one process or by several ranks (`trend.devices`, srun, torchrun:
`trendgen.design.embed_distributed`), with the embeddings of a run that was never stopped.

Artifacts (in `<output_dir>/embed/`): `embeddings.npy` (float32, L2-normalised, one row per used image, in
index order) and `index.json` (`paths`; `sets`: the period label of each row; `periods`: [{label, position}]
in time order (see `trendgen.trends.periods`), `skipped` [{path, reason, set}], `totals`: files per period,
`reused_from_parts`: files a resumed run took from an interrupted one, `precision`: what ran
the image tower, see `trendgen.inference.precision`).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trendgen.design.embed_parts import Embedded, PartAssembler, PartStore
from trendgen.design.results import EmbedResult
from trendgen.design.store import Stage
from trendgen.errors import TrendgenError
from trendgen.identity import files_identity
from trendgen.inference.clip_forward import (
    decode_workers,
    embed_batches,
    forward_threads,
    image_loader,
    intra_op_threads,
    pick_device,
)
from trendgen.inference.precision import Tower, torch_tower
from trendgen.trends.periods import period_list_files, trend_periods

log = logging.getLogger(__name__)

EMBEDDINGS = "embeddings.npy"
INDEX = "index.json"
PARTS = "embed.parts"  # beside the stage folder: a stage writes into a fresh folder each run


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
    trend: Any,
    clip: Any,
    stage_dir: Path,
    key: str,
    group: Any = None,
    tower: Tower | None = None,
    image_rate: Callable[[], float] | None = None,
) -> tuple[list[str], dict]:
    """Embed the photos of every period (`trendgen.trends.periods`) into `stage_dir`; returns the files
    written.

    `group`: the `EmbedGroup` of ranks srun or torchrun started, which share the work; without one,
    `trend.devices > 1` starts that many ranks here (`ddp_spawn`). `tower`: the image tower at the run's
    precision (`ClipTowers.tower("image")`); without one, the torch model in fp32. `image_rate`: the
    tower's images/s, asked on a CPU by `trend.num_workers=auto` (`decode_workers`) and, where workers and
    the forwards' threads would share too few cores, by `forward_threads`.
    """
    _model, _tokenizer, image_processor = clip
    tower = tower or torch_tower(clip[0])
    model, precision = tower.model, tower.autocast
    periods = trend_periods(trend)
    paths = [f for p in periods for f in p.files]
    sets = [p.label for p in periods for _ in p.files]
    workers = decode_workers(trend.num_workers, image_rate=image_rate)
    log.info("embed: %d DataLoader workers decode (trend.num_workers=%s)", workers, trend.num_workers)
    loader_args = {"batch_size": int(trend.batch_size), "num_workers": workers}
    part_size = loader_args["batch_size"] * int(trend.part_batches)
    store = PartStore.for_job(stage_dir.parent / PARTS, key, part_size, len(paths))
    reused = sum(len(store.files_of(p)) for p in range(store.count) if store.load(p) is not None)
    if group is not None:
        embeddings, used, skipped = group.embed(
            model, image_processor, paths, store, precision, **loader_args
        )
    elif trend.get("devices", 1) > 1:  # one process per device, started here; this one collects
        from trendgen.design.embed_distributed import embed_files_distributed

        embeddings, used, skipped = embed_files_distributed(
            model,
            image_processor,
            paths,
            store,
            **loader_args,
            precision=precision,
            devices=int(trend.devices),
            strategy="ddp_spawn",
        )
    else:
        threads = forward_threads(workers, pick_device(), image_rate)
        if threads is not None:
            log.info("embed: the forwards take %d thread(s) while %d workers decode", threads, workers)
        with intra_op_threads(threads):
            embeddings, used, skipped = embed_resumable(
                model, image_processor, paths, store, precision, **loader_args
            )
    used_per_period = Counter(sets[i] for i in used)
    for period in periods:
        if not used_per_period[period.label]:
            what = "trend.images" if len(periods) == 1 else f"period {period.label}"
            first = next((reason for i, reason in skipped if sets[i] == period.label), "unknown")
            raise TrendgenError(
                f"{what}: none of the {len(period.files)} files could be used as an image "
                f"(first reason: {first})"
            )
    index = {
        "paths": [str(paths[i]) for i in used],
        "sets": [sets[i] for i in used],
        "skipped": [{"path": str(paths[i]), "reason": reason, "set": sets[i]} for i, reason in skipped],
        "periods": [{"label": p.label, "position": p.position} for p in periods],
        "totals": {p.label: len(p.files) for p in periods},
        "reused_from_parts": reused,
        "precision": tower.record,
    }
    np.save(stage_dir / EMBEDDINGS, embeddings)
    (stage_dir / INDEX).write_text(json.dumps(index, indent=1))
    shutil.rmtree(stage_dir.parent / PARTS, ignore_errors=True)  # the whole result is written: parts done
    return [EMBEDDINGS, INDEX], {"reused_from_parts": reused, "precision": tower.record, **tower.info}


def load(stage_dir: Path) -> EmbedResult:
    """The embeddings and index an earlier run of this stage wrote."""
    return EmbedResult(np.load(stage_dir / EMBEDDINGS), json.loads((stage_dir / INDEX).read_text()))


def _settings(design: Any) -> dict[str, Any]:
    trend = design.cfg.trend
    periods = trend_periods(trend)
    return {
        "model": design.model_id,
        "periods": [[p.label, p.position, len(p.files)] for p in periods],  # with the files: who is where
        "files": files_identity([*period_list_files(trend), *(f for p in periods for f in p.files)]),
        "precision": design.towers.precision,  # what `auto` resolved to: embeddings of two never mix
    }


STAGE = Stage(
    "embed",
    inputs=(),
    settings=_settings,
    run=lambda design, folder: run(
        design.cfg.trend,
        design.clip,
        folder,
        design.keys["embed"],
        design.group,
        design.towers.tower("image"),
        design.towers.image_rate,
    ),
    load=load,
)
