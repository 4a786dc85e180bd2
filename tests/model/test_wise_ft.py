"""WiSE-FT: exact endpoints and average, refused mismatches, and a LoRA + WiSE-FT run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.clip import FREEZE_GEOMETRY as GEOMETRY
from helpers.clip import SMALL_TRAINING as SMALL
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from peft import PeftModel
from transformers import CLIPModel

from trendgen.config import CONF_DIR, ClipGeometry, register_configs
from trendgen.errors import TrendgenError
from trendgen.model.build import random_clip
from trendgen.model.wise_ft import interpolate
from trendgen.recipes.evaluate import evaluate, load_model_for_eval
from trendgen.recipes.train import train

torch.set_num_threads(1)


def two_models() -> tuple[dict, dict]:
    torch.manual_seed(0)
    start = random_clip(GEOMETRY, vocab_size=30).state_dict()
    torch.manual_seed(1)
    finetuned = random_clip(GEOMETRY, vocab_size=30).state_dict()
    return start, finetuned


def test_alpha_0_and_1_are_the_endpoints_and_a_half_is_their_exact_average():
    start, finetuned = two_models()
    assert any(not torch.equal(start[k], finetuned[k]) for k in start)
    for alpha, expected in ((0.0, start), (1.0, finetuned)):
        mixed = interpolate(start, finetuned, alpha)
        assert mixed.keys() == expected.keys()
        assert all(torch.equal(mixed[k], expected[k]) for k in expected), alpha
    half = interpolate(start, finetuned, 0.5)
    for name, value in half.items():
        if value.is_floating_point():
            assert torch.equal(value, (start[name] + finetuned[name]) / 2), name
        else:
            assert torch.equal(value, finetuned[name]), name  # position ids: equal in both
    quarter = interpolate(start, finetuned, 0.25)["logit_scale"]
    assert quarter == pytest.approx(0.75 * start["logit_scale"] + 0.25 * finetuned["logit_scale"])


def test_models_of_different_shapes_or_an_alpha_outside_0_1_are_refused():
    start, finetuned = two_models()
    wider = random_clip(ClipGeometry(**{**vars(GEOMETRY), "projection_dim": 12}), vocab_size=30).state_dict()
    with pytest.raises(TrendgenError, match=r"one architecture: visual_projection\.weight is \(12, 16\)"):
        interpolate(wider, finetuned, 0.5)
    fewer = {k: v for k, v in start.items() if not k.startswith("text_model.encoder.layers.1.")}
    with pytest.raises(TrendgenError, match=r"one architecture: text_model\.encoder\.layers\.1\..* missing"):
        interpolate(fewer, finetuned, 0.5)
    with pytest.raises(TrendgenError, match=r"lie in \[0, 1\]"):
        interpolate(start, finetuned, 1.5)


def composed(name: str, overrides: list[str], tmp_path: Path, out: str):
    """The config `trendgen-train` / `trendgen-eval` compose (in process: no Hydra run, output_dir given)."""
    register_configs()
    paths = [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / out}"]
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose(name, overrides=[*SMALL, *paths, *overrides])


def test_a_lora_run_with_wise_ft_exports_the_chosen_alpha_and_keeps_the_rest(tmp_path):
    run_dir = tmp_path / "run"
    overrides = [
        "model/freeze=none", "model.lora.enabled=true", "model.lora.rank=4", "model.optimizer.lr=1e-2",
        "model.wise_ft.alphas=[0,0.5]", "trainer.max_steps=4", "callbacks.progress_bar=null",
    ]  # fmt: skip
    train(composed("train", overrides, tmp_path, "run"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    wise = metrics["wise_ft"]
    losses = {name: scores["val/loss"] for name, scores in wise["alphas"].items()}
    assert set(losses) == {"alpha_0", "alpha_0.5"} and wise["chosen_by"] == "min val/loss on val"
    chosen = min(losses, key=losses.__getitem__)
    assert f"alpha_{wise['chosen']:g}" == chosen
    assert metrics["val/loss"] == losses[chosen]  # the top-level scores are the exported weights'
    assert wise["finetuned"]["val/loss"] != metrics["val/loss"]
    assert "test/loss" in metrics  # the chosen weights were tested

    folders = {p.name for p in (run_dir / "wise_ft").iterdir()}
    assert folders == {"alpha_0", "alpha_0.5", "alpha_1"} - {chosen}
    state = {name: CLIPModel.from_pretrained(run_dir / "wise_ft" / name).state_dict() for name in folders}
    exported = CLIPModel.from_pretrained(run_dir / "model").state_dict()
    state[chosen] = exported
    half = interpolate(state["alpha_0"], state["alpha_1"], 0.5)
    assert all(torch.equal(half[k], state["alpha_0.5"][k]) for k in half)

    # the adapter beside model/ turns the start (alpha 0) into the fine-tuned weights (alpha 1)
    base = CLIPModel.from_pretrained(run_dir / ("model" if chosen == "alpha_0" else "wise_ft/alpha_0"))
    adapted = PeftModel.from_pretrained(base, run_dir / "lora_adapter").merge_and_unload().state_dict()
    for name, value in state["alpha_1"].items():
        torch.testing.assert_close(adapted[name], value, atol=1e-6, rtol=1e-5)

    # trendgen-eval's loader interpolates two folders; here it reproduces the alpha 0.5 folder
    cfg = OmegaConf.create(
        {
            "model": {"name_or_path": str(run_dir / "wise_ft" / "alpha_1"), "pretrained": False},
            "eval": {"wise_ft": {"start": str(_folder(run_dir, "alpha_0", chosen)), "alpha": 0.5}},
        }
    )
    model, tokenizer, _ = load_model_for_eval(cfg)
    mixed = model.state_dict()
    assert all(torch.equal(mixed[k], state["alpha_0.5"][k]) for k in mixed)
    assert tokenizer is not None
    start = _folder(run_dir, "alpha_0", chosen)
    overrides = [
        f"model.name_or_path={run_dir / 'wise_ft' / 'alpha_1'}", "data.split=test",
        f"eval.wise_ft.start={start}", "eval.wise_ft.alpha=0.5",
    ]  # fmt: skip
    evaluate(composed("eval", overrides, tmp_path, "eval"))
    scores = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert scores["wise_ft"] == {"start": str(start), "alpha": 0.5} and scores["n_images"] == 32


def _folder(run_dir: Path, name: str, chosen: str) -> Path:
    return run_dir / "model" if name == chosen else run_dir / "wise_ft" / name
