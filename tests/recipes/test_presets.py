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


def test_every_app_preset_and_dataset_composes_in_range():
    """Each app's defaults, each experiment preset for the app it serves and each dataset's own schema."""
    from trendgen.config import check_settings

    def composed(app: str, *overrides: str):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(app, overrides=list(overrides))

    cases = [("train", ()), ("train_generator", ()), ("design", ()), ("eval", ())]
    cases += [("train", (f"experiment={e}",)) for e in ("demo", "fashion_mnist", "large_batch")]
    cases += [
        ("train_generator", (f"experiment={e}",)) for e in ("demo_generator", "fashion_mnist_generator")
    ]
    cases += [("design", ("experiment=demo",))]
    cases += [
        ("train", (f"data={d}",))
        for d in ("deepfashion", "deepfashion_inshop", "fashion_mnist", "folder", "hf")
    ]
    for app, overrides in cases:
        cfg = composed(app, *overrides)
        check_settings(cfg)
        if app != "design":  # the demo preset's data keys are the training side's; design has no data group
            assert set(cfg.data) >= {"name", "batch_size", "templates"}, (app, overrides)


def test_a_group_chosen_on_the_command_line_beats_the_preset():
    """`trendgen-design experiment=demo generator=none` draws nothing: the demo preset chooses its generator
    in its defaults list, not by setting generator.name inline."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        assert compose("design", overrides=["experiment=demo"]).generator.name == "trained"
        chosen = compose("design", overrides=["experiment=demo", "generator=none"], return_hydra_config=True)
    assert chosen.generator.name == "none"


def test_a_name_set_inline_against_the_chosen_option_is_refused():
    import pytest

    from trendgen.config import check_choices
    from trendgen.errors import TrendgenError

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("design", overrides=["generator=none", "generator.name=trained"])
    check_choices(cfg, {"generator": "trained"})
    with pytest.raises(TrendgenError, match=r"generator=none was chosen but generator.name is 'trained'"):
        check_choices(cfg, {"generator": "none"})
