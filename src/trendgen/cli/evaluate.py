"""trendgen-eval: score a saved model folder on one split and write OUTPUT/eval.json (conf/eval.yaml).

Example:
    trendgen-eval model.name_or_path=runs/train/runs/<run>/model data=fashion_mnist data.split=test
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from trendgen.cli import CONF_DIR
from trendgen.config import register_configs
from trendgen.errors import exit_on_user_error

register_configs()


def run(cfg: DictConfig) -> None:
    from trendgen.evaluate import evaluate  # heavy imports after Hydra has checked the config

    evaluate(cfg)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(run)(cfg)


if __name__ == "__main__":
    main()
