"""The embed stage on several devices or nodes: Lightning predict, whole parts per rank, collected in order.

The files still to embed are the parts not on disk yet (`trendgen.design.embed_parts`); rank r takes parts
`todo[r::world]` (`RankParts`, in place of Lightning's distributed sampler, so no file is embedded twice) and
a `BasePredictionWriter` saves each part the moment the rank finishes it. Once every rank is done, rank 0 (or
the caller, after a `ddp_spawn` run) collects the parts in file order. A run killed halfway leaves its
finished parts; the next run embeds only the rest.

Two ways in:
- one process, `trend.devices=N`: `embed_files_distributed(..., strategy="ddp_spawn")` starts N ranks itself;
- srun or torchrun started the ranks (`srun --nodes=M --ntasks-per-node=N trendgen-design trend.devices=N
  trend.num_nodes=M`): an `EmbedGroup` joins them. Rank 0 runs the pipeline and hands the embed job (the file
  list and the parts to do) to the other ranks, which embed their share and exit; every later stage runs on
  rank 0 alone. The parts go to the run dir, which must be on a filesystem every node sees (as Hydra's run
  dir already is).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Sampler

from trendgen.design.embed_parts import Embedded, PartAssembler, PartStore
from trendgen.inference.clip_forward import EmbedCollate, ImageFileDataset, embed_pixels
from trendgen.inference.onnx_runtime import OnnxClip
from trendgen.training.launch import check_rank_count, slurm_launched, under_torchrun

log = logging.getLogger(__name__)


class ImageEmbedder(pl.LightningModule):
    """CLIP's image tower as a Lightning predict module (`precision`: the autocast of a torch model; an
    `OnnxClip` runs int8 on the CPU)."""

    def __init__(self, model: Any, precision: str = "32") -> None:
        super().__init__()
        self.model, self.precision = model, precision
        self.allow_zero_length_dataloader_with_multiple_devices = True  # fewer parts left than ranks

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        features = None
        if batch["pixel_values"] is not None:
            features = embed_pixels(self.model, batch["pixel_values"], self.device, self.precision)
        return {"indices": batch["indices"], "features": features, "skipped": batch["skipped"]}


class PartWriter(BasePredictionWriter):
    """Saves each part of the store as soon as this rank has embedded its last batch."""

    def __init__(self, store: PartStore) -> None:
        super().__init__(write_interval="batch")
        self.store = store
        self.assembler: PartAssembler | None = None

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: Any, prediction: Any, *args: Any) -> None:
        if self.assembler is None:
            self.assembler = PartAssembler(self.store)
        self.assembler.add(prediction)


class RankParts(Sampler[int]):
    """This rank's whole parts of the files still to embed: parts `todo[rank::world]`, as positions in the
    loader's file list (the files of every part in `todo`, in order). Read at iteration, after spawn."""

    def __init__(self, store: PartStore, todo: list[int]) -> None:
        self.store, self.todo = store, list(todo)

    def _positions(self) -> list[int]:
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        starts, position = {}, 0
        for part in self.todo:
            starts[part] = position
            position += len(self.store.files_of(part))
        mine = self.todo[rank::world]
        return [starts[p] + k for p in mine for k in range(len(self.store.files_of(p)))]

    def __iter__(self) -> Iterator[int]:
        return iter(self._positions())

    def __len__(self) -> int:
        return len(self._positions())


def predict_parts(
    model: Any,
    image_processor: Any,
    paths: Sequence[str | Path],
    store: PartStore,
    todo: list[int],
    batch_size: int = 64,
    num_workers: int = 2,
    precision: str = "32",
    **trainer_kwargs: Any,
) -> None:
    """This rank's whole parts of `todo` through `Trainer.predict`, each saved to the store when done."""
    remaining = [i for p in todo for i in store.files_of(p)]
    loader = DataLoader(
        ImageFileDataset(paths, indices=remaining),
        batch_size=batch_size,
        sampler=RankParts(store, todo),
        num_workers=num_workers,
        collate_fn=EmbedCollate(image_processor),
    )
    trainer = pl.Trainer(
        callbacks=[PartWriter(store)],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        use_distributed_sampler=False,  # RankParts gives each rank whole parts
        **trainer_kwargs,
    )
    embedder = ImageEmbedder(model.eval(), precision)
    trainer.predict(embedder, dataloaders=loader, return_predictions=False)


def embed_files_distributed(
    model: Any, image_processor: Any, paths: Sequence[str | Path], store: PartStore, **kwargs: Any
) -> Embedded:
    """The parts not on disk yet through `Trainer.predict`, started from one process
    (`strategy="ddp_spawn"`); `kwargs`: those of `predict_parts` (batch_size, num_workers, precision, Trainer
    args)."""
    todo = store.todo()
    if todo:
        predict_parts(model, image_processor, paths, store, todo, **kwargs)
    return store.collect()


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
        check_rank_count(devices, num_nodes, world)
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
        store: PartStore,
        precision: str = "32",
        **loader_args: Any,
    ) -> Embedded:
        """Leader: hand the parts still to do to every rank, embed this rank's share, collect every part.

        The ranks run the leader's precision: its autocast, or the int8 ONNX files it built (`onnx`)."""
        job = {
            "paths": [str(Path(p).absolute()) for p in paths],
            "parts": str(store.folder.absolute()),
            "part_size": store.part_size,
            "todo": store.todo(),
            "onnx": str(model.folder) if isinstance(model, OnnxClip) else None,
        }
        loader_args = {**loader_args, "precision": precision}
        job |= {"loader_args": loader_args, "trainer_kwargs": self.trainer_kwargs}
        self._job_sent = True
        self._broadcast(job)
        _predict_share(model, image_processor, job, plugins=[self.env])
        return store.collect()

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
        if job.get("onnx"):
            model = OnnxClip(job["onnx"], model.config)
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
    """Run this rank's parts of the job, then wait until every rank has saved its own."""
    store = PartStore(job["parts"], job["part_size"], len(job["paths"]))
    if job["todo"]:
        trainer_kwargs |= job["trainer_kwargs"]
        predict_parts(
            model, image_processor, job["paths"], store, job["todo"], **job["loader_args"], **trainer_kwargs
        )
    if torch.distributed.is_initialized():
        torch.distributed.barrier()  # the leader collects only once every part is on disk
