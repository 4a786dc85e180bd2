"""Structured-config schemas for trendgen's own config groups, registered with Hydra's ConfigStore.

Each YAML file of a group lists its schema first in its defaults (`defaults: [schema, _self_]`), so a misspelt
or mistyped key in a YAML file or on the command line fails with a clear error before any work starts.
Groups that only instantiate third-party objects (trainer, logger, callbacks) stay free-form `_target_` nodes.
One module per family of groups: data (data, replay), model, design (trend, captions, llm, generator, design),
diffusion (diffusion, sampling), export, forecast (series, forecast, backtest).
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore

from trendgen.config.data import (
    DATA_SCHEMAS,
    AugmentConfig,
    DataConfig,
    DeepFashionDataConfig,
    FashionMnistDataConfig,
    FolderDataConfig,
    HfDataConfig,
    HfSourceConfig,
    InShopDataConfig,
    ReplayConfig,
    SyntheticDataConfig,
)
from trendgen.config.design import (
    CaptionsConfig,
    DesignConfig,
    GeneratorConfig,
    LLMConfig,
    SyntheticTrendConfig,
    TrendConfig,
)
from trendgen.config.diffusion import DiffusionConfig, EmaConfig, SamplingConfig, UNetConfig, UnetLoraConfig
from trendgen.config.export import ExportConfig, ExportWeights
from trendgen.config.forecast import BacktestConfig, ForecastConfig, SeriesConfig
from trendgen.config.location import CONF_DIR, conf_path
from trendgen.config.model import (
    ClipGeometry,
    ClipLoraConfig,
    FreezeConfig,
    LrGroups,
    ModelConfig,
    WiseFtConfig,
)
from trendgen.config.ranges import check_config, check_optimizers
from trendgen.config.resolvers import register_resolvers
from trendgen.errors import TrendgenError

__all__ = [
    "CONF_DIR",
    "DATA_SCHEMAS",
    "SCHEMAS",
    "AugmentConfig",
    "BacktestConfig",
    "CaptionsConfig",
    "ClipGeometry",
    "ClipLoraConfig",
    "DataConfig",
    "DeepFashionDataConfig",
    "DesignConfig",
    "DiffusionConfig",
    "EmaConfig",
    "ExportConfig",
    "ExportWeights",
    "FashionMnistDataConfig",
    "FolderDataConfig",
    "ForecastConfig",
    "FreezeConfig",
    "GeneratorConfig",
    "HfDataConfig",
    "HfSourceConfig",
    "InShopDataConfig",
    "LLMConfig",
    "LrGroups",
    "ModelConfig",
    "ReplayConfig",
    "SamplingConfig",
    "SeriesConfig",
    "SyntheticDataConfig",
    "SyntheticTrendConfig",
    "TrendConfig",
    "UNetConfig",
    "UnetLoraConfig",
    "WiseFtConfig",
    "check_choices",
    "check_settings",
    "conf_path",
    "register_configs",
]

SCHEMAS: dict[str, type] = {
    "data": DataConfig,
    "replay": ReplayConfig,
    "model": ModelConfig,
    "trend": TrendConfig,
    "captions": CaptionsConfig,
    "llm": LLMConfig,
    "generator": GeneratorConfig,
    "design": DesignConfig,
    "diffusion": DiffusionConfig,
    "sampling": SamplingConfig,
    "export": ExportConfig,
    "series": SeriesConfig,
    "forecast": ForecastConfig,
    "backtest": BacktestConfig,
}


def register_configs() -> None:
    """Store every schema as `<group>/schema` so each YAML file of the group can extend it; register the
    tree's resolvers."""
    cs = ConfigStore.instance()
    for group, node in SCHEMAS.items():
        cs.store(group=group, name="schema", node=node)
    for name, node in DATA_SCHEMAS.items():  # each dataset's own node
        cs.store(group="data", name=f"schema_{name}", node=node)
    register_resolvers()


def check_settings(cfg: Any) -> None:
    """Every numeric setting of the composed config in its range (`trendgen.config.ranges`); the data node
    (and a replayed one) by its dataset's own schema. A value out of range is one TrendgenError naming it."""
    schemas = {**SCHEMAS}
    data = cfg.get("data")
    if data is not None and data.get("name") in DATA_SCHEMAS:
        schemas["data"] = DATA_SCHEMAS[data.name]
    check_config(cfg, schemas)
    check_optimizers(cfg)
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        check_choices(cfg, HydraConfig.get().runtime.choices)
    replayed = (cfg.get("replay") or {}).get("data")
    if replayed is not None and replayed.get("name") in DATA_SCHEMAS:
        check_config(cfg.replay, {"data": DATA_SCHEMAS[replayed.name]})


NAMED_GROUPS = ("data", "llm", "generator", "diffusion")
"""Groups whose options each set `<group>.name` to the option's own name."""


def check_choices(cfg: Any, choices: Any) -> None:
    """Each named group holds the option chosen for it (`hydra.runtime.choices`): a preset that set a name
    inline would silently beat the user's `generator=none`, so it is refused instead."""
    for group in NAMED_GROUPS:
        chosen, node = (choices or {}).get(group), cfg.get(group)
        if chosen and node is not None and node.get("name") not in (None, chosen):
            raise TrendgenError(
                f"{group}={chosen} was chosen but {group}.name is {node.name!r}: a preset sets it inline; "
                f"presets choose groups in their defaults list (override /{group}: ...)"
            )
