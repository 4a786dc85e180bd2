"""Schema of the export group: which weights a training run exports."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ExportWeights(Enum):
    best = "best"  # the checkpoint the monitoring ModelCheckpoint chose (callbacks.model_checkpoint.monitor)
    last = "last"  # the weights training ended with


@dataclass
class ExportConfig:
    """Which weights become `model/` / `generator/`, metrics.json and the value a sweep optimises."""

    weights: ExportWeights = ExportWeights.best
