"""The precision and memory presets compose into the settings they promise."""

from __future__ import annotations

from hydra import compose, initialize_config_dir

from trendgen.config import CONF_DIR, register_configs

register_configs()


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_precision_presets():
    assert compose_train("trainer=gpu_bf16").trainer.precision == "bf16-mixed"
    assert compose_train("trainer=gpu_fp16").trainer.precision == "16-mixed"
    assert compose_train("trainer=ddp", "trainer.precision=bf16-mixed").trainer.strategy == "ddp"


def test_large_batch_preset_turns_on_checkpointing_and_compile():
    cfg = compose_train("experiment=large_batch")
    assert cfg.model.gradient_checkpointing and cfg.model.compile
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.accelerator == "gpu"
