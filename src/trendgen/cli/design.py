"""`trendgen-design`: trending photos -> trend -> captions -> prompt -> new designs -> report."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from trendgen.allocator import keep_freed_memory
from trendgen.config import CONF_DIR, check_settings, register_configs
from trendgen.design.inputs import check_inputs
from trendgen.errors import config_errors_exit_2, exit_on_user_error
from trendgen.training.launch import check_launch_layout

register_configs()


def run(cfg: DictConfig) -> None:
    keep_freed_memory()  # large tensors reuse freed heap rather than fresh pages (trendgen.allocator)
    check_settings(cfg)  # every numeric setting in its range, before any work
    check_inputs(cfg)  # the paths a user gave, said in a second rather than after torch and diffusers load
    check_launch_layout(cfg.trend)  # srun's or torchrun's process count against trend.devices x num_nodes
    from trendgen.recipes.design import run_design
    from trendgen.tracking.wandb_runs import log_design_run

    trend = run_design(cfg)
    log_design_run(cfg, trend)  # logger=wandb: the trend, prompt, designs and report in W&B


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="design")
def app(cfg: DictConfig) -> None:
    exit_on_user_error(run)(cfg)


main = config_errors_exit_2(app)


if __name__ == "__main__":
    main()
