"""Out-of-range settings, unknown keys and wrong types: one clear line naming the key, exit code 2, before
any work; never a traceback (a ZeroDivisionError, a scikit-learn error) or a silent oddity."""

from __future__ import annotations

import pytest
from helpers.apps import run_app
from helpers.design import compose_design, run_cli
from helpers.scale import VENV_BIN, job_env
from omegaconf import OmegaConf

from trendgen.config import check_settings
from trendgen.config.ranges import check_optimizers
from trendgen.errors import TrendgenError


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trend.batch_size=0", "trend.batch_size=0 must be at least 1"),
        ("trend.batch_size=-4", "trend.batch_size=-4 must be at least 1"),
        ("trend.part_batches=0", "trend.part_batches=0 must be at least 1"),
        ("trend.n_init=0", "trend.n_init=0 must be at least 1"),
        ("trend.confidence=2", "trend.confidence=2.0 must be in (0, 1)"),
        ("trend.bootstrap=0", "trend.bootstrap=0 must be at least 1"),
        ("trend.exemplars=-1", "trend.exemplars=-1 must be at least 0"),
        ("data.num_workers=-1", "data.num_workers=-1 must be at least 0"),
        ("generator.num_images=-2", "generator.num_images=-2 must be at least 0"),
    ],
)
def test_an_out_of_range_setting_is_named(override, message):
    overrides = [override] if not override.startswith("data.") else ["+data=synthetic", override]
    with pytest.raises(TrendgenError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_settings(compose_design(overrides))


def test_the_defaults_are_in_range():
    check_settings(compose_design([]))


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("trend.batch_size=0", "trendgen: error: trend.batch_size=0 must be at least 1"),
        ("trend.batchsize=4", "batchsize"),  # an unknown key
        ("trend.batch_size=many", "batch_size"),  # a wrong type
    ],
)
def test_the_app_exits_2_with_the_key_and_no_traceback(tmp_path, override, said):
    result = run_cli([override], tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert said in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("model.optimizer.lr=-1", "model.optimizer.lr=-1 must be more than 0"),
        ("model.optimizer.betas=[0.9,1.5]", "model.optimizer.betas[1]=1.5 must be in [0, 1)"),
    ],
)
def test_a_bad_optimizer_argument_is_one_line_before_training(tmp_path, override, said):
    """Was torch.optim's ValueError, with a traceback, once the model had loaded."""
    cmd = [VENV_BIN / "trendgen-train", override, f"hydra.run.dir={tmp_path / 'run'}"]
    result = run_app(cmd, cwd=tmp_path, env=job_env(TRENDGEN_ROOT=str(tmp_path)), timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"trendgen: error: {said}" in result.stderr and "Traceback" not in result.stderr


def test_the_generator_optimizer_is_checked_too():
    with pytest.raises(TrendgenError, match=r"diffusion.optimizer.weight_decay=-0.1 must be at least 0"):
        check_optimizers(OmegaConf.create({"diffusion": {"optimizer": {"lr": 1e-4, "weight_decay": -0.1}}}))
    check_optimizers(OmegaConf.create({"diffusion": {"optimizer": {"lr": 1e-4, "betas": [0.9, 0.999]}}}))
