"""The embed stage's work in parts: fixed runs of whole batches, each saved the moment it is done.

Part `p` holds files `p * part_size ... (p + 1) * part_size - 1` of the stage's file list (`part_size` is a
whole number of batches), as `parts/part-<p>.npz`: the indices of its usable files, their embeddings and its
skipped files. One process writes its parts in order; several ranks (Lightning predict) each take whole parts.
Either way a killed run leaves finished parts behind, the next run with the same key embeds only the others,
and the batches, hence the embeddings, are those of a run that was never stopped.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trendgen.inference.clip_forward import stack_features

Embedded = tuple[np.ndarray, list[int], list[tuple[int, str]]]
JOB = "job.json"


class PartStore:
    """The parts folder of one embed job over `n` files."""

    def __init__(self, folder: str | Path, part_size: int, n: int) -> None:
        self.folder, self.part_size, self.n = Path(folder), int(part_size), int(n)

    @classmethod
    def for_job(cls, folder: Path, key: str, part_size: int, n: int) -> PartStore:
        """The store for this stage key; parts another key or part size left are dropped first."""
        job = {"key": key, "part_size": part_size, "n": n}
        try:
            same = json.loads((folder / JOB).read_text()) == job
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            (folder / JOB).write_text(json.dumps(job))
        return cls(folder, part_size, n)

    @property
    def count(self) -> int:
        return (self.n + self.part_size - 1) // self.part_size

    def files_of(self, part: int) -> range:
        return range(part * self.part_size, min(self.n, (part + 1) * self.part_size))

    def path(self, part: int) -> Path:
        return self.folder / f"part-{part:06d}.npz"

    def load(self, part: int) -> dict[str, Any] | None:
        """A finished part; None when it is missing or torn (then it is embedded again)."""
        try:
            with np.load(self.path(part)) as data:
                return {
                    "indices": data["indices"].tolist(),
                    "features": data["features"],
                    "skipped": [(int(i), str(r)) for i, r in json.loads(str(data["skipped"]))],
                }
        except (OSError, ValueError, KeyError):
            return None

    def todo(self) -> list[int]:
        return [p for p in range(self.count) if self.load(p) is None]

    def save(self, part: int, batches: list[dict[str, Any]]) -> None:
        """Write one part from its embedded batches, atomically: a part on disk is always whole."""
        rows = [b for b in batches if b["features"] is not None]
        indices = np.array([i for b in rows for i in b["indices"]], np.int64)
        features = stack_features([b["features"] for b in rows])
        skipped = json.dumps([list(s) for b in batches for s in b["skipped"]])
        tmp = self.folder / f".part-{part:06d}.tmp"
        with open(tmp, "wb") as handle:
            np.savez(handle, indices=indices, features=features, skipped=skipped)
        os.replace(tmp, self.path(part))

    def collect(self) -> Embedded:
        """Every part, in file order: (embeddings [n_used, d], indices of the used files, skipped)."""
        parts = [self.load(p) for p in range(self.count)]
        missing = [p for p, part in enumerate(parts) if part is None]
        if missing:
            raise RuntimeError(f"embed parts {missing} were never written to {self.folder}")
        chunks = [torch.from_numpy(p["features"]) for p in parts if p["indices"]]
        used = [i for p in parts for i in p["indices"]]
        skipped = [s for p in parts for s in p["skipped"]]
        return stack_features(chunks), used, skipped


class PartAssembler:
    """Collects embedded batches and saves each part of the store as soon as its last file is in."""

    def __init__(self, store: PartStore) -> None:
        self.store = store
        self.pending: dict[int, list[dict[str, Any]]] = {}

    def add(self, batch: dict[str, Any]) -> None:
        first = min([*batch["indices"], *(i for i, _ in batch["skipped"])])
        part = first // self.store.part_size  # parts are whole batches: a batch never spans two
        self.pending.setdefault(part, []).append(batch)
        seen = sum(len(b["indices"]) + len(b["skipped"]) for b in self.pending[part])
        if seen == len(self.store.files_of(part)):
            self.store.save(part, self.pending.pop(part))
