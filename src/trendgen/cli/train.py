"""trendgen-train: fine-tune CLIP on captioned fashion images (Hydra app over conf/train.yaml).

Examples:
    trendgen-train experiment=demo trainer.max_steps=30
    trendgen-train data=fashion_mnist model=tiny trainer.max_time=00:00:10:00
    trendgen-train -m model.freeze.vision_trainable_blocks=1,2 model.optimizer.lr=1e-5,3e-5
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
    check_slurm_layout(cfg.trainer)  # a bad srun layout fails in seconds, before the heavy imports
    from trendgen.recipes.train import train  # heavy imports after Hydra has checked the config

    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric"))  # the value Hydra sweepers (Optuna) optimise


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def app(cfg: DictConfig) -> float | None:
    return exit_on_user_error(run)(cfg)


main = config_errors_exit_2(app)


if __name__ == "__main__":
    main()
