"""Ranges of numeric settings, declared on the schema fields and checked once the config is composed.

`ranged(64, low=1)` is a dataclass field whose value must be at least 1 (None passes where the type allows
it); `check_config(cfg, schemas)` walks every group's schema and says, in one line naming the key, which value
is out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trendgen.errors import TrendgenError


@dataclass(frozen=True)
class Range:
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the low end itself is out
    high_open: bool = False

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{'more than' if self.low_open else 'at least'} {self.low:g}"
        return f"{'less than' if self.high_open else 'at most'} {self.high:g}"

    def holds(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))


def ranged(default: Any, low: float | None = None, high: float | None = None, *, open_low: bool = False,
           open_high: bool = False) -> Any:  # fmt: skip
    """A schema field with `default` whose numeric value must lie in the range."""
    return dataclasses.field(default=default, metadata={"range": Range(low, high, open_low, open_high)})


def check_ranges(node: Any, schema: type, prefix: str) -> None:
    """Every ranged field of `schema` in `node` and its nested schemas; TrendgenError at the first out."""
    if node is None or not dataclasses.is_dataclass(schema):
        return
    for spec in dataclasses.fields(schema):
        if spec.name not in node:
            continue
        value = node[spec.name]
        key = f"{prefix}.{spec.name}"
        nested = spec.default_factory if spec.default_factory is not dataclasses.MISSING else None
        if isinstance(value, DictConfig) and nested is not None and dataclasses.is_dataclass(nested):
            check_ranges(value, nested, key)
            continue
        rule = spec.metadata.get("range")
        if rule is None or value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not rule.holds(value):
            raise TrendgenError(f"{key}={value} must be {rule.describe()}")


def check_config(cfg: DictConfig, schemas: dict[str, type]) -> None:
    """The ranged settings of every group of `cfg` that has a schema (`data` by its dataset's own)."""
    for group, schema in schemas.items():
        if group in cfg and OmegaConf.is_config(cfg[group]):
            check_ranges(cfg[group], schema, group)


OPTIMIZER_NODES = ("model.optimizer", "diffusion.optimizer")
"""The `_partial_` torch optimizers of the config, whose arguments have no schema of their own."""

OPTIMIZER_RANGES = {
    "lr": Range(low=0, low_open=True),
    "eps": Range(low=0, low_open=True),
    "weight_decay": Range(low=0),
    "momentum": Range(low=0),
}


def check_optimizers(cfg: DictConfig) -> None:
    """The arguments torch's optimizers check when they are built (lr, eps, weight decay, momentum, betas),
    checked before: otherwise a bad one is a ValueError traceback from torch.optim after the model loaded."""
    for path in OPTIMIZER_NODES:
        node = OmegaConf.select(cfg, path)
        if not OmegaConf.is_config(node):
            continue
        for name, rule in OPTIMIZER_RANGES.items():
            value = node.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and not rule.holds(value):
                raise TrendgenError(f"{path}.{name}={value} must be {rule.describe()}")
        for i, beta in enumerate(node.get("betas") or []):
            if isinstance(beta, int | float) and not 0 <= beta < 1:
                raise TrendgenError(f"{path}.betas[{i}]={beta} must be in [0, 1)")
