"""trendgen-train-generator: train the diffusion model that draws designs (Hydra app over
conf/train_generator.yaml).

Examples:
    trendgen-train-generator experiment=fashion_mnist_generator diffusion.text_encoder=runs/fmnist/model
    trendgen-train-generator diffusion=small_sd_lora data=folder data.root=~/catalogue trainer=gpu_bf16
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from trendgen.allocator import keep_freed_memory
from trendgen.config import CONF_DIR, check_settings, register_configs
from trendgen.errors import config_errors_exit_2, exit_on_user_error
from trendgen.training.launch import check_slurm_layout

register_configs()


def run(cfg: DictConfig) -> float | None:
    keep_freed_memory()  # large tensors reuse freed heap rather than fresh pages (trendgen.allocator)
    check_settings(cfg)  # every numeric setting in its range, before any work
    check_slurm_layout(cfg.trainer)
    from trendgen.recipes.train_generator import (
        train_generator,  # heavy imports after Hydra has checked the config
    )

    metrics = train_generator(cfg)
    return metrics.get(cfg.get("optimized_metric"))  # the value Hydra sweepers (Optuna) optimise


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train_generator")
def app(cfg: DictConfig) -> float | None:
    return exit_on_user_error(run)(cfg)


main = config_errors_exit_2(app)


if __name__ == "__main__":
    main()
