"""W&B logging of a `trendgen-forecast` run: the backtest scores as summary numbers and a table, the labels
and forecasts as tables, the report as an artifact (the run itself as in the other apps: `wandb_runs`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from trendgen.tracking.wandb_runs import finish, log_report_artifact, start_run, wandb_node

PREFIX = "forecast/"
_METRICS = ("mase", "mae", "smape", "wape", "coverage")


def forecast_metrics(record: dict[str, Any]) -> dict[str, float]:
    """Summary numbers: each model's backtest scores (`forecast/backtest/<model>/<metric>`), the chosen
    model's under `forecast/<metric>`, and the label counts."""
    out: dict[str, float] = {}
    backtest = record.get("backtest") or {}
    for model, scores in (backtest.get("scores") or {}).items():
        for metric in _METRICS:
            if scores[metric] is None:  # no series with a scale, or one origin: no coverage
                continue
            out[f"{PREFIX}backtest/{model}/{metric}"] = float(scores[metric])
            if model == backtest.get("chosen"):
                out[f"{PREFIX}{metric}"] = float(scores[metric])
    tests = record["growth_tests"]
    out.update({f"{PREFIX}emerging": float(tests["emerging"]), f"{PREFIX}fading": float(tests["fading"])})
    return out


def log_forecast_run(cfg: DictConfig, record: dict[str, Any]) -> str | None:
    """Log a finished forecast run to W&B; returns the run id (None without `logger.wandb`)."""
    if wandb_node(cfg) is None:
        return None
    import wandb

    run = start_run(cfg)
    failed = True
    try:
        metrics = forecast_metrics(record)
        scores = (record.get("backtest") or {}).get("scores") or {}
        tables = {
            f"{PREFIX}backtest": wandb.Table(
                columns=["model", *_METRICS], data=[[m, *(s[k] for k in _METRICS)] for m, s in scores.items()]
            ),
            f"{PREFIX}labels": wandb.Table(
                columns=["series", "label", "slope", "statistic", "p", "q"],
                data=[
                    [n, g["label"], g["slope"], g["statistic"], g["p"], g["q"]]
                    for n, g in record["labels"].items()
                ],
            ),
        }
        run.log({**metrics, **tables})
        run.summary.update(metrics)
        names = ("report.html", "forecast.json", "forecasts.csv")
        log_report_artifact(run, Path(str(cfg.paths.output_dir)), app="forecast", names=names)
        failed = False
    finally:
        finish(run, failed)
    return run.id
