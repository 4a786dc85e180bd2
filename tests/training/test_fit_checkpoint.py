"""A checkpoint is read as tensors and plain data only: loading one never runs code it carries."""

from __future__ import annotations

import pickle

import pytest
import pytorch_lightning as pl
import torch

from trendgen.training.fit import checkpoint_step, load_weights


class Planted:
    """What a tampered checkpoint could carry: unpickling it would create `path`."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)


def test_a_checkpoint_carrying_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": Tiny().state_dict(), "global_step": 3, "extra": Planted(str(marker))}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_weights(Tiny(), str(path))
    with pytest.raises(pickle.UnpicklingError):
        checkpoint_step(str(path))
    assert not marker.exists()


def test_a_plain_checkpoint_loads(tmp_path):
    source, target = Tiny(), Tiny()
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": source.state_dict(), "global_step": 7}, path)
    load_weights(target, str(path))
    assert torch.equal(target.layer.weight, source.layer.weight) and checkpoint_step(str(path)) == 7
