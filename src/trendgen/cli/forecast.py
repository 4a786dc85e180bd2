"""`trendgen-forecast`: backtest, forecast and label any table of trend series (conf/forecast.yaml).

Examples:
    trendgen-forecast series.path=shares.csv forecast.horizon=26
    trendgen-forecast series.path=f1.parquet series.layout=long forecast.level=90 trend.fdr=0.1
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from trendgen.allocator import keep_freed_memory
from trendgen.config import CONF_DIR, check_settings, register_configs
from trendgen.errors import config_errors_exit_2, exit_on_user_error

register_configs()


def run(cfg: DictConfig) -> None:
    keep_freed_memory()  # large tensors reuse freed heap rather than fresh pages (trendgen.allocator)
    check_settings(cfg)  # every numeric setting in its range, before any work
    from trendgen.recipes.forecast import run_forecast
    from trendgen.tracking.wandb_forecast import log_forecast_run

    record = run_forecast(cfg)
    log_forecast_run(cfg, record)  # logger=wandb: the backtest, labels and report in W&B


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="forecast")
def app(cfg: DictConfig) -> None:
    exit_on_user_error(run)(cfg)


main = config_errors_exit_2(app)


if __name__ == "__main__":
    main()
