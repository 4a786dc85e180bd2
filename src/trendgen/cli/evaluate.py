"""trendgen-eval: score a saved model folder on one split and write OUTPUT/eval.json (conf/eval.yaml).

Examples:
    trendgen-eval model.name_or_path=runs/train/runs/<run>/model data=fashion_mnist data.split=test
    trendgen-eval mode=generator generator_path=runs/<run>/generator model.name_or_path=<judge CLIP> \
        data=fashion_mnist sampling.samples_per_prompt=100
    trendgen-eval model.name_or_path=runs/train/runs/<run>/model logger=wandb logger.wandb.id=<its W&B run id>
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from trendgen.allocator import keep_freed_memory
from trendgen.config import CONF_DIR, check_settings, register_configs
from trendgen.errors import TrendgenError, config_errors_exit_2, exit_on_user_error

register_configs()


def run(cfg: DictConfig) -> None:
    keep_freed_memory()  # large tensors reuse freed heap rather than fresh pages (trendgen.allocator)
    check_settings(cfg)  # every numeric setting in its range, before any work
    from trendgen.tracking.wandb_runs import log_eval_run

    if cfg.mode == "generator":
        from trendgen.recipes.evaluate_generator import evaluate_generator

        result = evaluate_generator(cfg)
        log_eval_run(cfg, result, samples=Path(cfg.paths.output_dir) / "samples.png")
        return
    if cfg.mode != "clip":
        raise TrendgenError(f"mode must be clip or generator, not {cfg.mode!r}")
    from trendgen.recipes.evaluate import evaluate  # heavy imports after Hydra has checked the config

    log_eval_run(cfg, evaluate(cfg))  # logger=wandb: eval/ metrics (into a training run given its id)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def app(cfg: DictConfig) -> None:
    exit_on_user_error(run)(cfg)


main = config_errors_exit_2(app)


if __name__ == "__main__":
    main()
