"""Embed stage: every trending (and baseline) image through CLIP's image tower, in batches, resumable.

On one process the files are embedded in parts of `trend.part_batches` batches; each finished part is written
to `embed/parts/` at once (atomically), so a run killed halfway (`kill -9`, a preempted job) is picked up by
the next run with the same key: the parts already on disk are reused and only the rest is embedded. Parts
are whole batches at fixed offsets, so a resumed run forms the same batches, and gives the same embeddings,
as one that was never stopped. Several ranks (`trend.devices`, srun, torchrun) go through
`trendgen.embed_distributed` instead.

Artifacts (in `<output_dir>/embed/`): `embeddings.npy` (float32, L2-normalised, one row per used image, in
index order) and `index.json` (`paths`, `sets` (current | baseline) per row, `skipped` [{path, reason}],
`totals` per set, `reused_from_parts`: files a resumed run took from an interrupted one).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trendgen.clip_inference import embed_batches, image_loader, pick_device, stack_features
from trendgen.errors import TrendgenError
from trendgen.image_files import input_files, trend_files
from trendgen.stage_cache import Stage, files_identity

EMBEDDINGS = "embeddings.npy"
INDEX = "index.json"
PARTS = "parts"

Embedded = tuple[np.ndarray, list[int], list[tuple[int, str]]]


class PartStore:
    """Finished parts of one embed job (`parts/part-<n>.npz`), tied to the stage key that asked for them."""

    def __init__(self, folder: Path, key: str, part_size: int) -> None:
        self.folder, self.part_size = folder, part_size
        job = {"key": key, "part_size": part_size}
        job_file = folder / "job.json"
        try:
            same = json.loads(job_file.read_text()) == job
        except (OSError, ValueError):
            same = False
        if not same:  # parts of another config or another part size: start over
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            job_file.write_text(json.dumps(job))

    def path(self, part: int) -> Path:
        return self.folder / f"part-{part:06d}.npz"

    def load(self, part: int) -> dict[str, Any] | None:
        try:
            with np.load(self.path(part)) as data:
                return {
                    "indices": data["indices"].tolist(),
                    "features": data["features"],
                    "skipped": [tuple(s) for s in json.loads(str(data["skipped"]))],
                }
        except (OSError, ValueError, KeyError):
            return None  # missing or torn: embed it again

    def save(self, part: int, indices: list[int], features: np.ndarray, skipped: list) -> None:
        tmp = self.folder / f".part-{part:06d}.tmp"
        with open(tmp, "wb") as handle:
            np.savez(
                handle, indices=np.array(indices, np.int64), features=features, skipped=json.dumps(skipped)
            )
        os.replace(tmp, self.path(part))  # a part on disk is always whole


def embed_resumable(
    model: Any, image_processor: Any, paths: Sequence[str | Path], parts: PartStore, **loader_args: Any
) -> tuple[Embedded, int]:
    """Embed `paths` part by part, reusing the parts on disk; returns the result and how many files reused."""
    n, size = len(paths), parts.part_size
    done = {p: parts.load(p) for p in range((n + size - 1) // size)}
    todo = [p for p, part in done.items() if part is None]
    reused = sum(min(size, n - p * size) for p in done if p not in todo)
    if todo:
        device = pick_device()
        model.eval().to(device)
        remaining = [i for p in todo for i in range(p * size, min(n, (p + 1) * size))]
        loader = image_loader(paths, image_processor, indices=remaining, **loader_args)
        pending: dict[int, list[dict[str, Any]]] = {}
        for batch in embed_batches(model, loader, device, f"embedding {len(remaining)} of {n} images"):
            first = (batch["indices"] or [batch["skipped"][0][0]])[0]
            part = first // size  # parts are whole batches: a batch never spans two
            pending.setdefault(part, []).append(batch)
            seen = sum(len(b["indices"]) + len(b["skipped"]) for b in pending[part])
            if seen == min(size, n - part * size):
                done[part] = _write_part(parts, part, pending.pop(part))
    embeddings = [done[p]["features"] for p in sorted(done) if len(done[p]["indices"])]
    used = [i for p in sorted(done) for i in done[p]["indices"]]
    skipped = [(int(i), str(r)) for p in sorted(done) for i, r in done[p]["skipped"]]
    return (stack_features([torch.from_numpy(e) for e in embeddings]), used, skipped), reused


def _write_part(parts: PartStore, part: int, batches: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [b for b in batches if b["features"] is not None]
    record = {
        "indices": [i for b in rows for i in b["indices"]],
        "features": stack_features([b["features"] for b in rows]),
        "skipped": [list(s) for b in batches for s in b["skipped"]],
    }
    parts.save(part, record["indices"], record["features"], record["skipped"])
    return record


def run(cfg: Any, clip: Any, stage_dir: Path, key: str, group: Any = None) -> tuple[list[str], dict]:
    """Embed `trend.images` (and `trend.baseline_images`) into `stage_dir`; returns the files written.

    `group`: the `EmbedGroup` of ranks srun or torchrun started, which share the work; without one,
    `trend.devices > 1` starts that many ranks here (`ddp_spawn`).
    """
    model, _tokenizer, image_processor = clip
    current, baseline = trend_files(cfg.trend)
    paths = [*current, *baseline]
    sets = ["current"] * len(current) + ["baseline"] * len(baseline)
    loader_args = {"batch_size": int(cfg.trend.batch_size), "num_workers": int(cfg.trend.num_workers)}
    reused = 0
    if group is not None:
        embeddings, used, skipped = group.embed(
            model, image_processor, paths, stage_dir / "shards", **loader_args
        )
    elif cfg.trend.get("devices", 1) > 1:  # one process per device; this process merges the shards
        from trendgen.embed_distributed import embed_files_distributed

        embeddings, used, skipped = embed_files_distributed(
            model,
            image_processor,
            paths,
            shard_dir=stage_dir / "shards",
            **loader_args,
            devices=int(cfg.trend.devices),
            strategy="ddp_spawn",
        )
    else:
        parts = PartStore(stage_dir / PARTS, key, loader_args["batch_size"] * int(cfg.trend.part_batches))
        result, reused = embed_resumable(model, image_processor, paths, parts, **loader_args)
        embeddings, used, skipped = result
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
    }
    np.save(stage_dir / EMBEDDINGS, embeddings)
    (stage_dir / INDEX).write_text(json.dumps(index, indent=1))
    shutil.rmtree(stage_dir / PARTS, ignore_errors=True)  # the whole result is written: parts are done
    return [EMBEDDINGS, INDEX], {"reused_from_parts": reused}


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
    }


STAGE = Stage(
    "embed",
    inputs=(),
    settings=_settings,
    run=lambda design, folder: run(design.cfg, design.clip, folder, design.keys["embed"], design.group),
    load=load,
)
