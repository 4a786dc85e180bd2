"""The evaluation recipe behind `trendgen-eval`: score a saved model folder on one split, write `eval.json`.

Scores: zero-shot top-1 accuracy and weighted F1 over the category prompts (a prompt ensemble with
`data.zero_shot_templates`), image→text and text→image recall@1/5/10 by item id (see
`trendgen.model.metrics`), the number of images scored and the images skipped.

`eval.datasets=[...]` scores one model on several datasets in one run (what a fine-tune learnt and what it
forgot): each entry is a `conf/data` name or a mapping `{name: <conf/data name>, <data keys>...}`, and
`eval.json` holds each one's scores under `datasets.<name>` (`report_as` renames one, e.g. two splits of
one dataset). Without the list, `data` alone is scored and `eval.json` keeps its flat layout.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pytorch_lightning.callbacks import RichProgressBar

from trendgen.data.datamodule import FashionDataModule
from trendgen.errors import TrendgenError
from trendgen.files import write_text
from trendgen.hub import is_local
from trendgen.model.build import load_clip, load_saved
from trendgen.model.metrics import EVAL_KEYS, RECALL_KS
from trendgen.model.module import ClipFineTuner
from trendgen.model.wise_ft import eval_wise_ft, load_interpolated

log = logging.getLogger(__name__)

TASKS = ("text_to_image", "category_to_product")  # trendgen.model.metrics.RetrievalRecall.ranking_tasks
# the leaderboard's columns: (header, where in a dataset's scores)
BOARD = (
    ("zero-shot acc", ("zero_shot_accuracy",)),
    ("weighted F1", ("zero_shot_weighted_f1",)),
    ("t2i R@1", ("tasks", "text_to_image", "recall@1")),
    ("t2i R@10", ("tasks", "text_to_image", "recall@10")),
    ("t2i MRR", ("tasks", "text_to_image", "mrr")),
    ("t2i NDCG@10", ("tasks", "text_to_image", "ndcg@10")),
    ("c2p P@1", ("tasks", "category_to_product", "precision@1")),
    ("c2p MRR", ("tasks", "category_to_product", "mrr")),
)


def load_model_for_eval(cfg: DictConfig) -> tuple[Any, Any, Any]:
    """CLIP, tokenizer and image processor to score: `model.name_or_path` (a saved folder, or with
    `model.pretrained=true` a hub id), or with `eval.wise_ft.start` and `eval.wise_ft.alpha` the WiSE-FT
    interpolation (1 - alpha) * start + alpha * that model (tokenizer and processor: that model's)."""
    name = str(cfg.model.name_or_path)
    hub_id = cfg.model.pretrained and not is_local(name)  # a hub id: the zero-shot baseline
    parts = load_clip(cfg.model) if hub_id else load_saved(name)
    wise = eval_wise_ft(cfg)
    if wise is None:
        return parts
    start, alpha = wise
    log.info("scoring the WiSE-FT interpolation at alpha %g between %s and %s", alpha, start, name)
    return load_interpolated(start, parts, alpha), parts[1], parts[2]


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate `model.name_or_path` on `data.split` (or on each of `eval.datasets`); returns what it writes
    to eval.json.

    The model is a saved folder (e.g. a training run's `model/`) or, with `model.pretrained=true`, a hub id.
    """
    name = str(cfg.model.name_or_path)
    datasets = dataset_configs(cfg.get("eval", {}).get("datasets"))  # bad entries fail before loading
    parts = load_model_for_eval(cfg)
    model_id = str(Path(name).resolve()) if is_local(name) else name
    if datasets is None:
        result: dict[str, Any] = {**score_dataset(cfg, parts, cfg.data), "model": model_id}
        summary = _summary(result)
    else:
        scores = {key: score_dataset(cfg, parts, data_cfg) for key, data_cfg in datasets.items()}
        result = {"model": model_id, "datasets": scores}
        summary = "\n".join(f"{key}: {_summary(s)}" for key, s in scores.items())
        board = Path(cfg.paths.output_dir) / "leaderboard.md"
        write_text(board, leaderboard(scores))
        summary += f"\nleaderboard: {board}"
    if eval_wise_ft(cfg) is not None:
        result["wise_ft"] = dict(zip(("start", "alpha"), eval_wise_ft(cfg), strict=True))
    out = Path(cfg.paths.output_dir) / "eval.json"
    write_text(out, json.dumps(result, indent=2) + "\n")
    log.info("wrote %s: %s", out, summary)
    print(f"{summary}\nwrote {out}")
    return result


def score_dataset(cfg: DictConfig, parts: tuple[Any, Any, Any], data_cfg: DictConfig) -> dict[str, Any]:
    """The eval.json scores of the model `parts` (model, tokenizer, image processor) on `data_cfg.split`."""
    model, tokenizer, image_processor = parts
    datamodule = FashionDataModule(
        data_cfg, tokenizer, image_processor, model.config.text_config.max_position_embeddings
    )
    module = ClipFineTuner(model, tokenizer, cfg.model, category_prompts=datamodule.zero_shot_prompts)
    trainer: pl.Trainer = instantiate(
        cfg.trainer, logger=False, callbacks=[RichProgressBar()], enable_checkpointing=False
    )
    trainer.test(module, datamodule=datamodule, verbose=False)  # the test loader reads data.split
    logged = {k.removeprefix("test/"): float(v) for k, v in trainer.callback_metrics.items()}
    n_skipped, skipped = datamodule.skipped_files()
    result: dict[str, Any] = {key: logged.get(name) for name, key in EVAL_KEYS.items()}
    result.update(
        {
            "data": str(data_cfg.name),
            "split": str(data_cfg.split),
            "zero_shot_templates": len(datamodule.zero_shot_prompts),
            "n_images": int(logged.get("n_images", 0)),
            "skipped": n_skipped,
            "skipped_images": [{"image": image, "reason": reason} for image, reason in skipped],
        }
    )
    tasks: dict[str, dict[str, float]] = {}  # Marqo's ranking tasks: {task: {metric: value}}
    for key, value in logged.items():
        task, sep, metric = key.partition("/")
        if sep and (task in TASKS or task.startswith("facet_")):  # facet_<field>: FacetRanking
            tasks.setdefault(task, {})[metric] = value
    result["tasks"] = tasks
    if any(k.startswith("q2g_R@") for k in logged):  # query/gallery datasets (In-shop)
        result.update({f"query_to_gallery_recall@{k}": logged.get(f"q2g_R@{k}") for k in RECALL_KS})
    return result


def dataset_configs(entries: Any) -> dict[str, DictConfig] | None:
    """`eval.datasets` as {report name: data config}; None when the list is not given."""
    if entries is None:
        return None
    if not OmegaConf.is_list(entries) and not isinstance(entries, list):
        raise TrendgenError(f"eval.datasets must be a list of data config names or mappings, not {entries!r}")
    configs: dict[str, DictConfig] = {}
    for entry in entries:
        overrides = OmegaConf.to_container(entry, resolve=True) if OmegaConf.is_config(entry) else entry
        if isinstance(overrides, str):
            overrides = {"name": overrides}
        if not isinstance(overrides, dict) or not isinstance(overrides.get("name"), str):
            raise TrendgenError(
                f"eval.datasets entry {entry!r}: give a conf/data name or a mapping with `name` and data keys"
            )
        key = str(overrides.pop("report_as", overrides["name"]))
        if key in configs:
            raise TrendgenError(f"eval.datasets names {key!r} twice: give one of them `report_as: <name>`")
        configs[key] = data_config(overrides)
    if not configs:
        raise TrendgenError("eval.datasets is empty: list the datasets to score (or leave it null)")
    return configs


def data_config(overrides: dict[str, Any]) -> DictConfig:
    """The data config `conf/data/<name>.yaml`, composed as Hydra composes `data=<name>`, with the other keys
    of `overrides` merged on top (before its interpolations resolve), checked against the data schema."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    from trendgen.config import CONF_DIR

    name = overrides.pop("name")

    def composed() -> DictConfig:
        return compose("eval", overrides=[f"data={name}"])

    try:
        if GlobalHydra.instance().is_initialized():  # inside trendgen-eval
            root = composed()
        else:
            with initialize_config_dir(CONF_DIR, version_base="1.3"):
                root = composed()
        root.data.merge_with(overrides)
        data = OmegaConf.to_container(root.data, resolve=True)
    except HydraException as err:
        raise TrendgenError(f"eval.datasets: no data config {name!r} in conf/data ({err})") from None
    except OmegaConfBaseException as err:
        raise TrendgenError(f"eval.datasets entry {name!r}: {err}".splitlines()[0]) from None
    from trendgen.config import DATA_SCHEMAS, DataConfig

    data_cfg = OmegaConf.structured(DATA_SCHEMAS.get(str(data.get("name")), DataConfig))
    data_cfg.merge_with(data)
    return data_cfg


def _summary(result: dict[str, Any]) -> str:
    return ", ".join(f"{k}={result[k]:.4f}" for k in EVAL_KEYS.values() if result[k] is not None)


def leaderboard(scores: dict[str, dict[str, Any]]) -> str:
    """A markdown table of each dataset's scores, as Marqo's fashion leaderboard lays them out, with the mean
    over the datasets that have each score ("-" where a dataset has none)."""

    def cell(result: dict[str, Any], path: tuple[str, ...]) -> float | None:
        value: Any = result
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return None if value is None else float(value)

    rows = {name: [cell(result, path) for _, path in BOARD] for name, result in scores.items()}
    columns = list(zip(*rows.values(), strict=True))
    rows["mean"] = [
        sum(v for v in col if v is not None) / len([v for v in col if v is not None])
        if any(v is not None for v in col)
        else None
        for col in columns
    ]
    lines = ["| dataset | " + " | ".join(h for h, _ in BOARD) + " |", "|---" * (len(BOARD) + 1) + "|"]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.4f}" for v in values) + " |")
    return "\n".join(lines) + "\n"
