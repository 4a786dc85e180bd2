"""trendgen-train and trendgen-eval end to end through their console scripts, on a few synthetic garments."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.apps import run_app
from helpers.clip import SMALL_TRAINING
from helpers.scale import assert_reports_what_it_logged
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoProcessor, CLIPModel

BIN = Path(sys.executable).parent
# Secrets a training run really gets: W&B's key (W&B offline all the same), a hub token that an override also
# puts into the config under a plain name, and an LLM key. None may land in a file.
SECRETS = {
    "WANDB_API_KEY": "wandb0secret0c8e1f4a2b9d7e6c5a4b3f2e1d0c9b8a7f6e5d4",
    "HF_TOKEN": "hf_secret7Qk2Zp9Lm4Xr8Tn1Vb6Wc3Yd5",
    "OPENAI_API_KEY": "sk-test-secret-4f1c9",
}
SMALL = SMALL_TRAINING


EVERY_STEP = "callbacks.step_checkpoint.every_n_train_steps=1"  # checkpoints/steps/last.ckpt: last weights


def run_cli(tool: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        SECRETS, WANDB_MODE="offline", TRENDGEN_ROOT=str(cwd), WANDB_SILENT="true", OMP_NUM_THREADS="1"
    )
    return run_app([BIN / tool, *overrides], cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One short run: 5 steps (4 per epoch, so validation runs once), logged to W&B offline; the hub token
    reaches the config twice: under a plain name (`run_note`) and under a name that says token."""
    root = tmp_path_factory.mktemp("train")
    run_dir = root / "run"
    secret_config = ["+run_note=${oc.env:HF_TOKEN}", "+hub_token=${oc.env:HF_TOKEN}"]
    proc = run_cli(
        "trendgen-train", *SMALL, "trainer.max_steps=5", "logger=[csv,wandb]", EVERY_STEP, *secret_config,
        f"hydra.run.dir={run_dir}", cwd=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_training_leaves_a_model_folder_transformers_loads(trained):
    model = CLIPModel.from_pretrained(trained / "model")
    processor = AutoProcessor.from_pretrained(trained / "model")
    inputs = processor(text=["a red plain dress"], images=[_picture()], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits_per_image.shape == (1, 1)
    assert (trained / "checkpoints" / "last.ckpt").is_file()
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["global_step"] == 5
    assert_reports_what_it_logged(trained)  # the one validation's score, as logged
    assert metrics["val/n_images"] == 32


def test_the_exported_model_is_the_best_checkpoint_validated_and_tested(trained):
    """5 steps, validated once (after step 4): model/ holds step 4's weights, not the last (step 5)."""
    metrics = json.loads((trained / "metrics.json").read_text())
    exported = metrics["exported"]
    assert exported["weights"] == "best" and exported["monitor"] == "val/loss" and exported["mode"] == "min"
    best = Path(exported["checkpoint"])
    assert best.parent == trained / "checkpoints" and best.name == "epoch000-step4.ckpt"
    assert metrics["val/loss"] == pytest.approx(exported["score"], rel=1e-5)  # the exported weights rescored
    assert metrics["test/n_images"] == 32 and "test/loss" in metrics  # the test split, after fit
    saved = CLIPModel.from_pretrained(trained / "model").state_dict()
    assert torch.equal(saved["visual_projection.weight"], _weights(best)["visual_projection.weight"])
    last = _weights(trained / "checkpoints" / "steps" / "last.ckpt")
    assert not torch.equal(saved["visual_projection.weight"], last["visual_projection.weight"])


def test_a_run_stopped_before_its_first_validation_exports_the_last_weights_and_says_so(tmp_path):
    run_dir = tmp_path / "run"
    # logger=none too: the default callbacks' LearningRateMonitor is left out instead of refusing the run
    overrides = ["trainer.max_steps=2", EVERY_STEP, f"hydra.run.dir={run_dir}", "logger=none"]
    proc = run_cli("trendgen-train", *SMALL, *overrides, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    exported = json.loads((run_dir / "metrics.json").read_text())["exported"]
    assert exported["weights"] == "last" and "before a validation" in exported["reason"]
    saved = CLIPModel.from_pretrained(run_dir / "model").state_dict()
    last = _weights(run_dir / "checkpoints" / "steps" / "last.ckpt")
    assert torch.equal(saved["visual_projection.weight"], last["visual_projection.weight"])


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items()}


def test_wandb_logs_the_config_and_no_secret(trained):
    runs = list((trained / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "W&B should log offline with WANDB_MODE=offline, key or not"
    records = next(runs[0].glob("run-*.wandb")).read_bytes()  # offline runs keep the config in the run log
    assert b"vision_trainable_blocks" in records and b"synthetic" in records  # the resolved config is logged
    # the run resolved the token into its config and its overrides (W&B's run name): W&B got them redacted
    assert b'"<redacted>"' in records and b"+run_note=<redacted>" in records
    leaks = [
        (name, p)
        for p in trained.parent.rglob("*")  # the run dir, its W&B files and logs, and anything beside it
        if p.is_file()
        for name, secret in SECRETS.items()
        if secret.encode() in p.read_bytes()
    ]
    assert leaks == []


def test_eval_writes_every_score(trained, tmp_path):
    proc = run_cli(
        "trendgen-eval",
        *SMALL,
        f"model.name_or_path={trained / 'model'}",
        "data.split=test",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert scores["n_images"] == 32 and scores["skipped"] == 0
    # the zero-shot scores are those of the saved model, worked out here with transformers and scikit-learn
    labels, predicted = zero_shot_by_hand(trained / "model")
    assert scores["zero_shot_accuracy"] == pytest.approx(accuracy_score(labels, predicted), abs=1e-6)
    weighted_f1 = f1_score(labels, predicted, average="weighted", zero_division=0)
    assert scores["zero_shot_weighted_f1"] == pytest.approx(weighted_f1, abs=1e-6)
    for direction in ("image_to_text", "text_to_image"):  # a larger k never finds less
        recalls = [scores[f"{direction}_recall@{k}"] for k in (1, 5, 10)]
        assert recalls == sorted(recalls), (direction, recalls)


def test_eval_scores_each_listed_dataset_under_its_name(trained, tmp_path):
    """eval.datasets (in process, as trendgen-eval runs it): the SMALL synthetic test split given as a mapping
    of data keys, and its val split under another name; each report is that dataset's own (the test one
    equals a single-dataset eval worked out by hand)."""
    from hydra import compose, initialize_config_dir

    from trendgen.config import CONF_DIR, register_configs
    from trendgen.recipes.evaluate import evaluate

    small = "name:synthetic,size:64,val_size:32,test_size:32,batch_size:16,num_workers:0,image_px:32"
    overrides = [
        f"model.name_or_path={trained / 'model'}",
        f"eval.datasets=[{{{small}}},{{{small},split:val,report_as:synthetic_val}}]",
    ]
    register_configs()
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("eval", overrides=overrides)
    cfg.paths.output_dir = str(tmp_path)
    evaluate(cfg)
    report = json.loads((tmp_path / "eval.json").read_text())
    assert set(report["datasets"]) == {"synthetic", "synthetic_val"}
    test, val = report["datasets"]["synthetic"], report["datasets"]["synthetic_val"]
    assert (test["split"], test["n_images"], val["split"], val["n_images"]) == ("test", 32, "val", 32)
    labels, predicted = zero_shot_by_hand(trained / "model")
    assert test["zero_shot_accuracy"] == pytest.approx(accuracy_score(labels, predicted), abs=1e-6)
    assert test["zero_shot_templates"] == 1
    # Marqo's ranking tasks (the synthetic garments' fields as facets too), and the leaderboard with the mean
    facets = {"facet_garment", "facet_color", "facet_pattern"}
    for scores in (test, val):
        assert set(scores["tasks"]) == {"text_to_image", "category_to_product"} | facets
        for task in scores["tasks"].values():
            scored = {"recall@1", "recall@10", "precision@1", "precision@10", "mrr", "ndcg@10", "map"}
            assert set(task) == scored
            assert 0 <= task["precision@1"] <= task["mrr"] <= 1 and 0 < task["map"] <= 1
    board = (tmp_path / "leaderboard.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in board[2:]] == ["synthetic", "synthetic_val", "mean"]
    mean_accuracy = float(board[4].split("|")[2])
    assert mean_accuracy == pytest.approx(
        (test["zero_shot_accuracy"] + val["zero_shot_accuracy"]) / 2, abs=1e-4
    )


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["nosuch"], "no data config 'nosuch'"),
        (["synthetic", {"name": "synthetic", "split": "val"}], "names 'synthetic' twice"),
        ([{"name": "synthetic", "batch_sise": 8}], "batch_sise"),
        ([{"split": "val"}], "a mapping with `name`"),
    ],
)
def test_bad_eval_dataset_lists_are_refused_clearly(entries, message):
    from trendgen.errors import TrendgenError
    from trendgen.recipes.evaluate import dataset_configs

    with pytest.raises(TrendgenError, match=re.escape(message)):
        dataset_configs(entries)


def test_a_second_run_into_the_same_dir_does_not_overwrite_the_model(trained):
    before = (trained / "model" / "model.safetensors").read_bytes()
    proc = run_cli(
        "trendgen-train", *SMALL, "trainer.max_steps=2", f"hydra.run.dir={trained}", cwd=trained.parent
    )
    assert proc.returncode == 2
    assert "already holds a saved model" in proc.stderr and "Traceback" not in proc.stderr
    assert (trained / "model" / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_sise=8", "batch_sise"),
        ("trainer.max_stepz=5", "max_stepz"),
        ("model=tinyy", "tinyy"),
        ("export.weights=bset", "bset"),
    ],
)
def test_a_misspelt_key_is_refused_clearly(tmp_path, override, message):
    proc = run_cli("trendgen-train", override, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "model").exists()


def zero_shot_by_hand(model_dir: Path) -> tuple[list[int], list[int]]:
    """(true, predicted) category of each test image: the category prompt nearest it (cosine)."""
    from hydra import compose, initialize_config_dir

    from trendgen.config import CONF_DIR, register_configs
    from trendgen.data import build_dataset

    register_configs()
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("eval", overrides=[*SMALL, "data.split=test"])
    dataset = build_dataset(cfg.data, "test")
    model, processor = CLIPModel.from_pretrained(model_dir).eval(), AutoProcessor.from_pretrained(model_dir)
    images = [dataset[i]["image"] for i in range(len(dataset))]
    inputs = processor(text=dataset.category_prompts(), images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        similarity = model(**inputs).logits_per_image  # [images, categories]
    return list(dataset.category_ids), similarity.argmax(dim=1).tolist()


def _picture():
    from PIL import Image

    return Image.new("RGB", (40, 40), (200, 30, 30))
