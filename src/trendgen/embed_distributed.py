"""The embed stage on several devices or nodes: Lightning predict, a shard per rank, merged in input order.

Each rank embeds its share of the files (Lightning's distributed sampler), and a `BasePredictionWriter` writes
`shard-<rank>.npz` (file indices, embeddings, skipped files) at the end of the epoch; once every rank has
written, rank 0 (or the caller, after a `ddp_spawn` run) merges the shards back into the files' original
order. The sampler pads the last ranks with repeated files; a file written twice carries the same embedding
both times, so the merge keeps one.

Two ways in:
- one process, `trend.devices=N`: `embed_files_distributed(..., strategy="ddp_spawn")` starts N ranks itself;
- srun or torchrun started the ranks (`srun --nodes=M --ntasks-per-node=N trendgen-design trend.devices=N
  trend.num_nodes=M`): an `EmbedGroup` joins them. Rank 0 runs the pipeline and hands the embed job (the file
  list) to the other ranks, which embed their share and exit; every later stage runs on rank 0 alone. The
  shards go to the run dir, which must be on a filesystem every node sees (as Hydra's run dir already is).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from trendgen.clip_inference import embed_pixels, image_loader
from trendgen.errors import TrendgenError
from trendgen.slurm import slurm_launched, under_torchrun

log = logging.getLogger(__name__)


class ImageEmbedder(pl.LightningModule):
    """CLIP's image tower as a Lightning predict module."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        features = None
        if batch["pixel_values"] is not None:
            features = embed_pixels(self.model, batch["pixel_values"], self.device)
        return {"indices": batch["indices"], "features": features, "skipped": batch["skipped"]}


class ShardWriter(BasePredictionWriter):
    """Writes each rank's predictions to `<shard_dir>/shard-<rank>.npz` once its epoch ends."""

    def __init__(self, shard_dir: str | Path) -> None:
        super().__init__(write_interval="epoch")
        self.shard_dir = Path(shard_dir)

    def write_on_epoch_end(
        self, trainer: pl.Trainer, pl_module: Any, predictions: Any, batch_indices: Any
    ) -> None:
        rows = [p for p in predictions if p["features"] is not None]
        indices = np.array([i for p in rows for i in p["indices"]], dtype=np.int64)
        features = torch.cat([p["features"] for p in rows]).numpy() if rows else np.zeros((0, 0), np.float32)
        skipped = [list(s) for p in predictions for s in p["skipped"]]
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        np.savez(
            self.shard_dir / f"shard-{trainer.global_rank:05d}.npz",
            indices=indices,
            features=features.astype(np.float32),
            skipped=np.array(json.dumps(skipped)),
        )
        trainer.strategy.barrier("shards-written")  # rank 0 merges only once every shard is on disk


def merge_shards(shard_dir: str | Path) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """(embeddings [n_used, d] in file order, indices of the used files, skipped (index, reason))."""
    by_index: dict[int, np.ndarray] = {}
    skipped: dict[int, str] = {}
    for shard in sorted(Path(shard_dir).glob("shard-*.npz")):
        data = np.load(shard)
        for index, row in zip(data["indices"].tolist(), data["features"], strict=True):
            by_index[index] = row
        skipped.update({int(i): str(r) for i, r in json.loads(str(data["skipped"]))})
    used = sorted(by_index)
    embeddings = np.stack([by_index[i] for i in used]) if used else np.zeros((0, 0), np.float32)
    return embeddings.astype(np.float32), used, sorted(skipped.items())


def predict_shards(
    model: Any,
    image_processor: Any,
    paths: Sequence[str | Path],
    shard_dir: str | Path,
    batch_size: int = 64,
    num_workers: int = 2,
    **trainer_kwargs: Any,
) -> None:
    """This rank's share of `paths` through `Trainer.predict` into `<shard_dir>/shard-<rank>.npz`."""
    loader = image_loader(paths, image_processor, batch_size, num_workers)
    trainer = pl.Trainer(
        callbacks=[ShardWriter(shard_dir)],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        **trainer_kwargs,
    )
    trainer.predict(ImageEmbedder(model.eval()), dataloaders=loader, return_predictions=False)


def embed_files_distributed(
    model: Any, image_processor: Any, paths: Sequence[str | Path], shard_dir: str | Path, **kwargs: Any
) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """`clip_inference.embed_files` through `Trainer.predict`, started from one process
    (`strategy="ddp_spawn"`); `kwargs`: those of `predict_shards` (batch_size, num_workers, Trainer args)."""
    predict_shards(model, image_processor, paths, shard_dir, **kwargs)
    return merge_shards(shard_dir)


def launched_environment() -> Any | None:
    """Lightning's cluster environment when srun or torchrun started this process (maybe the only rank)."""
    from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if under_torchrun():
        return TorchElasticEnvironment()
    if slurm_launched():
        return SLURMEnvironment(auto_requeue=False)  # a design job is requeued by SLURM, not by Lightning
    return None


class EmbedGroup:
    """The ranks srun or torchrun started for one design run, joined in one process group.

    Rank 0 (the leader) runs the pipeline; when it reaches the embed stage it broadcasts the job (file list,
    shard dir, loader and Trainer settings) and every rank runs `predict_shards`, whose Trainer (strategy
    `ddp`) finds the group set up and uses it: nccl on GPUs, gloo on CPU, as Lightning would choose. The
    other ranks (followers) `serve` one job and return. A leader that needs no embedding (the stage is
    reused, or the run failed first) `release`s them with an empty job.
    """

    def __init__(self, env: Any, devices: int, num_nodes: int) -> None:
        world = env.world_size()
        if devices * num_nodes != world:
            raise TrendgenError(
                f"trend.devices={devices} x trend.num_nodes={num_nodes} is {devices * num_nodes} ranks, but "
                f"{world} process(es) were started: start one per device "
                f"(torchrun --nproc-per-node={devices}, srun --ntasks-per-node={devices})"
            )
        self.env = env  # given to the Trainer too, so it takes its ranks from the same place
        self.rank = env.global_rank()
        self.trainer_kwargs = {"devices": devices, "num_nodes": num_nodes, "strategy": "ddp"}
        self._job_sent = False
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        backend = "gloo"
        if torch.cuda.is_available():  # one GPU per rank, the one Lightning will give this rank
            torch.cuda.set_device(env.local_rank())
            backend = "nccl"
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend, rank=self.rank, world_size=world)
        log.info("embed group: rank %d of %d (%s)", self.rank, world, type(env).__name__)

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def _broadcast(self, job: dict[str, Any] | None) -> dict[str, Any] | None:
        box = [job]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def embed(
        self,
        model: Any,
        image_processor: Any,
        paths: Sequence[str | Path],
        shard_dir: Path,
        **loader_args: Any,
    ) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
        """Leader: hand the job to every rank, embed this rank's share, merge all shards in file order."""
        shutil.rmtree(shard_dir, ignore_errors=True)  # shards of an earlier, interrupted attempt
        job = {"paths": [str(Path(p).absolute()) for p in paths], "shard_dir": str(shard_dir.absolute())}
        job |= {"loader_args": loader_args, "trainer_kwargs": self.trainer_kwargs}
        self._job_sent = True
        self._broadcast(job)
        _predict_share(model, image_processor, job, plugins=[self.env])
        result = merge_shards(shard_dir)  # the shards are all written: the writer waits for every rank
        shutil.rmtree(shard_dir, ignore_errors=True)
        return result

    def release(self) -> None:
        """Leader: tell the followers there is nothing (more) to embed; idempotent."""
        if self.is_leader and not self._job_sent:
            self._job_sent = True
            self._broadcast(None)

    def serve(self, load_clip: Callable[[], Any]) -> int:
        """Follower: wait for the leader's job and run this rank's share; returns how many files it had."""
        job = self._broadcast(None)
        if job is None:
            log.info("rank %d: nothing to embed (rank 0 reuses the embed stage, or stopped)", self.rank)
            return 0
        model, _tokenizer, image_processor = load_clip()
        _predict_share(model, image_processor, job, plugins=[self.env])
        log.info(
            "rank %d: embedded its share of %d files; rank 0 runs the later stages",
            self.rank,
            len(job["paths"]),
        )
        return len(job["paths"])

    def close(self) -> None:
        self.release()
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _predict_share(model: Any, image_processor: Any, job: dict[str, Any], **trainer_kwargs: Any) -> None:
    trainer_kwargs |= job["trainer_kwargs"]
    predict_shards(
        model, image_processor, job["paths"], job["shard_dir"], **job["loader_args"], **trainer_kwargs
    )
