"""Weights & Biases for the apps without a Lightning logger: `trendgen-design` and `trendgen-eval`, and the
exported model folder of a training run.

Every app reads the same `logger.wandb` node training's `WandbLogger` gets (project, entity, group, name, id,
tags, job_type, save_dir, offline and any extra `wandb.init` keyword), so one `logger=wandb` works everywhere:
offline without WANDB_API_KEY, grouped per sweep, named from the overrides, id derived from the run dir
(`trendgen.tracking.runs`), the config logged without secrets (`trendgen.tracking.secrets_env.public_config`).

- design: k and the target's share and growth in the summary, each cluster's share per period (history,
  against `trend/period_index`), the trend table (`trend/clusters`), the ranked captions, the prompt and its
  source, the designs as images with their rerank scores, and report.html with trend.json as an artifact.
- eval: every number of eval.json (or eval_generator.json) under `eval/`; with `logger.wandb.id=<training run
  id>` into that training run (resumed), its config under `eval`, beside the training run's own `test/`.
- training: with `logger.wandb.log_model` on, the exported `model/` (or `generator/`) folder as an artifact of
  type "model" (Lightning's own `log_model` logs checkpoints only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trendgen.errors import TrendgenError, first_line
from trendgen.tracking.runs import set_run_identity, wandb_offline_without_key
from trendgen.tracking.secrets_env import public_config, without_secrets
from trendgen.tracking.trend_record import (
    ATTRIBUTE_COLUMNS,
    TREND_COLUMNS,
    attribute_rows,
    design_summary,
    number,
    share_series,
    trend_rows,
)

log = logging.getLogger(__name__)

# Keys of logger.wandb that are WandbLogger's own, not wandb.init's.
LIGHTNING_ONLY = ("_target_", "save_dir", "offline", "log_model", "prefix", "checkpoint_name", "experiment")
LIGHTNING_ONLY += ("version", "anonymous", "add_file_policy")
EVAL_PREFIX = "eval/"


def wandb_node(cfg: DictConfig) -> DictConfig | None:
    """The `logger.wandb` node, or None when the app does not log to W&B."""
    logger_cfg = cfg.get("logger")
    if not logger_cfg or not isinstance(logger_cfg, DictConfig):
        return None
    return logger_cfg.get("wandb")


def init_settings(cfg: DictConfig, join_given_run: bool = False) -> dict[str, Any] | None:
    """`wandb.init` keywords from `logger.wandb`, as WandbLogger builds them; None without that node.

    Fills id, group and name as training does (`set_run_identity`); `join_given_run`: a run id the user set
    names another app's run (eval into its training run), so its name, group and job type are left alone.
    """
    node = wandb_node(cfg)
    if node is None:
        return None
    wandb_offline_without_key(cfg)
    set_run_identity(cfg)
    plain = OmegaConf.to_container(node, resolve=True)
    settings = {k: v for k, v in plain.items() if k not in LIGHTNING_ONLY and v is not None}
    settings["id"] = plain.get("id") or plain.get("version")
    if isinstance(settings["id"], str) and 1 < len(parts := settings["id"].split("/")) <= 3:
        # a run's path as W&B shows it, [entity/]project/id
        settings["id"], settings["project"] = parts[-1], parts[-2]
        if len(parts) == 3:
            settings["entity"] = parts[0]
    settings["dir"] = str(plain.get("save_dir") or plain.get("dir") or cfg.paths.output_dir)
    Path(settings["dir"]).mkdir(parents=True, exist_ok=True)
    if plain.get("offline"):
        settings["mode"] = "offline"
    if plain.get("anonymous"):
        settings["anonymous"] = "allow"
    if join_given_run:
        for key in ("name", "group", "job_type", "tags", "notes"):
            settings.pop(key, None)
    for key in ("name", "group", "notes"):
        if isinstance(settings.get(key), str):
            settings[key] = without_secrets(settings[key])
    if settings.get("tags"):
        settings["tags"] = [without_secrets(str(t)) for t in settings["tags"]]
    return settings


def start_run(cfg: DictConfig, join_given_run: bool = False) -> Any:
    """A wandb run for this app (None without `logger.wandb`); its config is the public config, or with
    `join_given_run` the same under `<task_name>` (the joined run keeps its own config)."""
    settings = init_settings(cfg, join_given_run)
    if settings is None:
        return None
    import wandb

    config = public_config(cfg)
    try:
        if join_given_run:
            run = wandb.init(**settings)
            run.config.update({str(cfg.get("task_name", "eval")): config}, allow_val_change=True)
        else:
            run = wandb.init(config=config, **settings)
    except wandb.errors.Error as err:  # a bad id, key or project: the app's results are on disk already
        raise TrendgenError(
            f"logger.wandb: W&B refused the run ({first_line(err)}); the results are in "
            f"{cfg.paths.output_dir} (WANDB_MODE=offline logs without the server)"
        ) from err
    log.info("W&B run %s (%s)", run.id, "offline" if run.offline else "online")
    return run


def finish(run: Any, failed: bool) -> None:
    try:
        run.finish(exit_code=1 if failed else 0)
    except Exception as err:  # the app's results are on disk already: keep its real outcome
        log.warning("could not finish the W&B run: %s", err)


# ----------------------------------------------------------------------------------------------------
# trendgen-design
# ----------------------------------------------------------------------------------------------------


def _log_share_history(run: Any, trend: dict[str, Any]) -> Any:
    """One history row per period (`trend/period_index`, `trend/period`, `trend/share/cluster_<id>`: W&B
    draws each cluster's share over time); returns the same as a long table with the intervals."""
    import wandb

    run.define_metric("trend/period_index")
    run.define_metric("trend/share/*", step_metric="trend/period_index")
    series = {c.get("id"): share_series(trend, c) for c in trend.get("clusters", [])}
    table = wandb.Table(columns=["period_index", "period", "cluster", "share", "low", "high"])
    for i in range(max((len(s) for s in series.values()), default=0)):
        point: dict[str, Any] = {"trend/period_index": i}
        for cluster_id, rows in series.items():
            if i < len(rows):
                row = rows[i]
                point["trend/period"] = row["period"]
                point[f"trend/share/cluster_{cluster_id}"] = row["share"]
                table.add_data(i, row["period"], cluster_id, row["share"], row["low"], row["high"])
        run.log(point)
    return table


def _trend_tables(trend: dict[str, Any]) -> dict[str, Any]:
    """The trend table (a cluster per row, an exemplar image), the ranked captions, each facet's best, and
    on a timeline the attribute series (each caption's share per period, its growth)."""
    import wandb

    clusters = wandb.Table(columns=TREND_COLUMNS)
    for row in trend_rows(trend):
        exemplar = wandb.Image(row["exemplar"]) if row["exemplar"] else None
        clusters.add_data(*[exemplar if c == "exemplar" else row[c] for c in TREND_COLUMNS])
    captions = wandb.Table(columns=["rank", "facet", "text", "score"])
    for rank, caption in enumerate(trend.get("captions", []), start=1):
        captions.add_data(rank, caption["facet"], caption["text"], caption["score"])
    facets = wandb.Table(columns=["facet", "rank", "text", "score"])
    for facet, rows in (trend.get("facets") or {}).items():
        for rank, caption in enumerate(rows, start=1):
            facets.add_data(facet, rank, caption["text"], caption["score"])
    tables = {"trend/clusters": clusters, "trend/captions": captions, "trend/facets": facets}
    summary, per_period = attribute_rows(trend)
    if summary:  # a timeline: each facet's captions over the periods
        tables["trend/attributes"] = wandb.Table(
            columns=ATTRIBUTE_COLUMNS, data=[[row[c] for c in ATTRIBUTE_COLUMNS] for row in summary]
        )
        columns = ["facet", "caption", "period", "share", "low", "high"]
        data = [[row[c] for c in columns] for row in per_period]
        tables["trend/attribute_shares"] = wandb.Table(columns=columns, data=data)
    return tables


def _design_images(trend: dict[str, Any]) -> dict[str, Any]:
    """The designs, best first, as images captioned with seed and rerank score, and as a table."""
    import wandb

    designs = [d for d in trend.get("designs") or [] if Path(d["path"]).is_file()]
    if not designs:
        return {}
    table = wandb.Table(columns=["rank", "seed", "score", "design"])
    images = []
    for rank, design in enumerate(designs, start=1):
        image = wandb.Image(design["path"], caption=f"seed {design['seed']} · score {design['score']:.4f}")
        table.add_data(rank, design["seed"], design["score"], image)
        images.append(image)
    return {"designs/images": images, "designs/table": table}


def _log_design(run: Any, trend: dict[str, Any], out: Path) -> None:
    shares = _log_share_history(run, trend)
    run.log({**_trend_tables(trend), "trend/shares": shares, **_design_images(trend)})
    summary = design_summary(trend)
    prompt = trend.get("prompt") or {}
    for key in ("text", "generator_text", "source", "fallback_reason"):
        if prompt.get(key) is not None:
            summary[f"prompt/{key}"] = prompt[key]
    summary.update({f"seconds/{stage}": s for stage, s in (trend.get("stage_seconds") or {}).items()})
    run.summary.update(summary)
    log_report_artifact(run, out)


def log_report_artifact(
    run: Any,
    out: Path,
    app: str = "design",
    names: tuple[str, ...] = ("report.html", "trend.json", "prompt.txt"),
) -> None:
    """The run's report files (those of `names` in `out`) as a W&B artifact `<app>-<run id>`, type report."""
    import wandb

    files = [out / name for name in names if (out / name).is_file()]
    if not files:
        return
    artifact = wandb.Artifact(f"{app}-{run.id}", type="report", description=f"trendgen-{app} report")
    for path in files:
        artifact.add_file(str(path), name=path.name)
    run.log_artifact(artifact)


def log_design_run(cfg: DictConfig, trend: dict[str, Any]) -> str | None:
    """Log a finished design run (`trend`: what trend.json holds) to W&B; returns the run id (None: no
    `logger.wandb`, or a rank other than 0, which returns an empty trend)."""
    if not trend or wandb_node(cfg) is None:
        return None
    run = start_run(cfg)
    failed = True
    try:
        _log_design(run, trend, Path(str(trend.get("output_dir") or cfg.paths.output_dir)))
        failed = False
    finally:
        finish(run, failed)
    return run.id


# ----------------------------------------------------------------------------------------------------
# trendgen-eval
# ----------------------------------------------------------------------------------------------------


def _flat_numbers(values: dict[str, Any], prefix: str) -> Iterator[tuple[str, float]]:
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _flat_numbers(value, f"{prefix}{key}/")
        elif number(value) is not None:
            yield f"{prefix}{key}", float(value)


def eval_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """What an eval run logs: every number of `result` (nested dicts flattened) and its short text fields
    (model, data, split), under `eval/`; nulls (a recall@k its gallery cannot give) are left out."""
    metrics: dict[str, Any] = dict(_flat_numbers(result, EVAL_PREFIX))
    for key in ("model", "generator", "judge", "data", "split"):
        if isinstance(result.get(key), str):
            metrics[f"{EVAL_PREFIX}{key}"] = without_secrets(result[key])
    return metrics


def log_eval_run(cfg: DictConfig, result: dict[str, Any], samples: Path | None = None) -> str | None:
    """Log an eval result (eval.json's content) to W&B; returns the run id (None without `logger.wandb`).

    `logger.wandb.id` set by the user names the run to log into (e.g. the training run of the model: its W&B
    id), resumed with resume="allow"; otherwise eval is a run of its own like any other app's.
    `samples`: an image to log beside the numbers (mode=generator's samples.png).
    """
    node = wandb_node(cfg)
    if node is None:
        return None
    given_id = bool(node.get("id") or node.get("version"))
    run = start_run(cfg, join_given_run=given_id)
    failed = True
    try:
        metrics = eval_metrics(result)
        numbers = {k: v for k, v in metrics.items() if isinstance(v, float)}
        logged: dict[str, Any] = dict(numbers)
        if samples is not None and samples.is_file():
            import wandb

            logged[f"{EVAL_PREFIX}samples"] = wandb.Image(str(samples), caption="a row per category prompt")
        run.log(logged)
        run.summary.update(metrics)  # a resumed run keeps them even where its history is further on
        failed = False
    finally:
        finish(run, failed)
    return run.id


# ----------------------------------------------------------------------------------------------------
# training: the exported folder as a model artifact
# ----------------------------------------------------------------------------------------------------


def log_exported_folder(
    trainer: Any, folder: Path, checkpoint: str | None, scores: dict[str, Any] | None = None
) -> None:
    """Add `folder` (the exported model/ or generator/, from `checkpoint` or the last weights) as a W&B
    artifact of type "model", `exported-<folder>-<run id>`, to the run of every WandbLogger of `trainer`
    whose `log_model` is on (call on rank 0). Metadata: which weights, the step, the exported weights'
    scores (`scores`, what metrics.json gets; by default the trainer's last logged values)."""
    from pytorch_lightning.loggers import WandbLogger

    if scores is None:
        scores = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    weights = "best" if checkpoint else "last"
    metadata = {"weights": weights, "checkpoint": checkpoint, "global_step": trainer.global_step}
    for logger in trainer.loggers:
        if not isinstance(logger, WandbLogger) or not getattr(logger, "_log_model", False):
            continue
        import wandb

        try:  # the export is done and on disk: a W&B failure (a finished run after Ctrl-C) only warns
            run = logger.experiment
            name = f"exported-{folder.name}-{run.id}"  # Lightning's checkpoints are `model-<id>`: apart
            artifact = wandb.Artifact(name, type="model", metadata={**metadata, "metrics": scores})
            artifact.add_dir(str(folder), policy="immutable")  # model/ is never overwritten: no copy
            run.log_artifact(artifact, aliases=["latest", weights])
            log.info("logged %s to W&B as the model artifact %s", folder, name)
        except Exception as err:
            log.warning("could not log %s to W&B: %s", folder, err)
