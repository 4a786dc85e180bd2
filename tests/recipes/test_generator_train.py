"""trendgen-train-generator end to end on synthetic garments: the generator folder, its validation, resume,
EMA export, W&B offline, and `trendgen-design generator=trained` drawing with what it wrote."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from helpers.generator import clip_folder, generator_overrides, run_tool
from PIL import Image

from trendgen.generator.export import read_record, words
from trendgen.generator.pipeline import TrendgenPipeline

SECRET = "wandb-secret-7f3a"
STEPS = 6  # 6 steps of 8 images per epoch: validation runs once, at the end of the epoch


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generator")
    clip = clip_folder(root)
    run_dir = root / "run"
    args = [*generator_overrides(clip, run_dir), f"trainer.max_steps={STEPS}", "logger=wandb"]
    proc = run_tool(
        "trendgen-train-generator", args, root, env={"WANDB_API_KEY": SECRET, "WANDB_MODE": "offline"}
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"root": root, "clip": clip, "run": run_dir}


def test_the_generator_folder_is_a_diffusers_pipeline_that_draws(trained):
    folder = trained["run"] / "generator"
    pipe = TrendgenPipeline.from_pretrained(folder)
    out = pipe(
        prompt=["a red striped dress"], num_inference_steps=2, generator=torch.Generator().manual_seed(0)
    )
    image = out.images[0]
    assert isinstance(image, Image.Image) and image.size == (16, 16)
    record = read_record(folder)
    assert record["kind"] == "pixel" and record["ema"] is True and record["global_step"] == STEPS
    assert {"red", "striped", "dress"} <= set(record["vocabulary"])
    assert record["category_prompts"][0] == "a photo of a t-shirt"


def test_validation_draws_a_grid_and_logs_generator_metrics(trained):
    grids = sorted((trained["run"] / "samples").glob("*.png"))
    assert [g.name for g in grids] == [f"epoch000-step{STEPS}.png"]
    width, height = Image.open(grids[0]).size
    assert (width, height) == (16, 10 * 16)  # one row per garment prompt, one sample each
    metrics = json.loads((trained["run"] / "metrics.json").read_text())
    for key in ("val/loss", "val/prompt_fidelity", "val/clip_score", "val/near_copy_rate"):
        assert key in metrics, key
    assert metrics["val/prompt_fidelity"] == pytest.approx(
        sum(metrics[f"val/prompt_fidelity/{c}"] for c in range(10)) / 10
    )
    assert metrics["global_step"] == STEPS


def test_the_exported_weights_are_the_ema_weights(trained):
    checkpoint = torch.load(
        trained["run"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    exported = UNet2DConditionModel.from_pretrained(trained["run"] / "generator", subfolder="unet")
    names = [n for n, p in exported.named_parameters()]
    ema = dict(zip(names, checkpoint["ema"]["shadow_params"], strict=True))
    trained_weights = {k.removeprefix("unet."): v for k, v in checkpoint["state_dict"].items()}
    assert set(trained_weights) == set(names)  # checkpoints hold the trained weights only (no text tower)
    moved = 0
    for name, param in exported.named_parameters():
        assert torch.equal(param.detach(), ema[name]), name
        moved += not torch.equal(ema[name], trained_weights[name])
    assert moved > len(names) // 2  # EMA really differs from the raw weights


def test_wandb_offline_run_holds_the_sample_grid_and_no_secret(trained):
    runs = list((trained["run"] / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = [p for p in runs[0].rglob("*") if p.is_file()]
    assert any(p.suffix == ".png" and "samples" in p.name for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path


def test_resume_from_last_continues_the_step_count(trained, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained["run"], run_dir, ignore=shutil.ignore_patterns("wandb"))
    args = [
        *generator_overrides(trained["clip"], run_dir),
        f"trainer.max_steps={STEPS + 2}",
        "ckpt_path=last",
    ]
    proc = run_tool("trendgen-train-generator", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == STEPS + 2
    assert read_record(run_dir / "generator")["global_step"] == STEPS + 2


def test_an_earlier_generator_is_never_overwritten(trained):
    before = (trained["run"] / "generator" / "generator.json").read_bytes()
    args = [*generator_overrides(trained["clip"], trained["run"]), "trainer.max_steps=1"]
    proc = run_tool("trendgen-train-generator", args, trained["root"])
    assert proc.returncode == 2
    assert "already holds a generator" in proc.stderr and "Traceback" not in proc.stderr
    assert (trained["run"] / "generator" / "generator.json").read_bytes() == before


def test_design_draws_with_the_trained_generator(trained, tmp_path):
    from helpers.design import BANK, write_looks

    images = write_looks(tmp_path / "looks", n=12)
    out = tmp_path / "design"
    args = [
        f"hydra.run.dir={out}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"model.name_or_path={trained['clip']}",
        f"captions.bank={BANK}",
        f"trend.images={images}",
        "trend.clusters=2",
        "trend.n_init=2",
        "trend.num_workers=0",
        "generator=trained",
        f"generator.name_or_path={trained['run'] / 'generator'}",
        "generator.num_images=2",
        "generator.steps=2",
    ]
    proc = run_tool("trendgen-design", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    trend = json.loads((out / "trend.json").read_text())
    vocabulary = set(read_record(trained["run"] / "generator")["vocabulary"])
    generator_words = trend["prompt"]["generator_text"].replace(",", " ").split()
    assert generator_words and set(generator_words) <= vocabulary  # no styling word it never saw
    assert set(words(trend["prompt"]["text"])) - vocabulary  # the written prompt has words it never saw
    assert len(trend["designs"]) == 2
    design = Image.open(trend["designs"][0]["path"])
    assert design.size == (16, 16)
    assert design.text["generator_prompt"] == trend["prompt"]["generator_text"]
    assert design.text["prompt"] == trend["prompt"]["text"]
    assert "the trend: exemplars of cluster" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("diffusion.text_encoder={root}", "is not a CLIP folder"),
        (
            "diffusion.unet.cross_attention_dim=64",
            "text encoder's width 32 does not fit the UNet's cross-attention",
        ),
        ("data.templates=['']", "the dataset has no captions"),
        ("diffusion.unet.norm_num_groups=7", "diffusion.unet:"),
    ],
)
def test_bad_generator_training_input_is_refused_before_training(trained, tmp_path, override, message):
    from hydra import compose, initialize_config_dir

    from trendgen.config import CONF_DIR, register_configs
    from trendgen.errors import TrendgenError
    from trendgen.recipes.train_generator import train_generator

    register_configs()
    overrides = [
        o for o in generator_overrides(trained["clip"], tmp_path / "run") if not o.startswith("hydra.")
    ]
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train_generator",
            [*overrides, f"paths.output_dir={tmp_path / 'run'}", override.format(root=tmp_path)],
        )
    with pytest.raises(TrendgenError, match=re.escape(message)):
        train_generator(cfg)
    assert not (tmp_path / "run" / "generator").exists()


def test_design_refuses_a_folder_that_is_not_a_generator(trained, tmp_path):
    from helpers.design import write_looks

    args = [
        f"hydra.run.dir={tmp_path / 'design'}",
        f"model.name_or_path={trained['clip']}",
        f"trend.images={write_looks(tmp_path / 'looks', n=6)}",
        "generator=trained",
        f"generator.name_or_path={trained['clip']}",
    ]
    proc = run_tool("trendgen-design", args, tmp_path)
    assert proc.returncode == 2
    assert "is not a trendgen generator (no generator.json)" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "design" / "trend.json").exists()


def test_two_ranks_train_validate_and_export(trained, tmp_path):
    run_dir = tmp_path / "run"
    args = [
        *generator_overrides(trained["clip"], run_dir),
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_steps=3",
        "trainer.limit_train_batches=3",  # the epoch ends, and validates, at step 3
    ]
    proc = run_tool("trendgen-train-generator", args, tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 3 and "val/prompt_fidelity" in metrics
    assert read_record(run_dir / "generator")["global_step"] == 3


def test_eval_scores_a_generator_folder(trained, tmp_path):
    from helpers.generator import SMALL_DATA

    out = tmp_path / "eval"
    args = [
        "mode=generator",
        f"generator_path={trained['run'] / 'generator'}",
        f"model.name_or_path={trained['clip']}",
        *SMALL_DATA,
        "sampling.samples_per_prompt=2",
        "sampling.steps=2",
        "sampling.novelty_train_images=16",
        "sampling.novelty_heldout_images=8",
        f"hydra.run.dir={out}",
    ]
    proc = run_tool("trendgen-eval", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((out / "eval_generator.json").read_text())
    per_class = [result[f"prompt_fidelity/{c}"] for c in range(10)]
    assert result["prompt_fidelity"] == pytest.approx(sum(per_class) / 10)
    assert all(v in (0.0, 0.5, 1.0) for v in per_class)  # two images per prompt
    drawn = 20  # two images for each of 10 prompts
    assert result["near_copy_rate"] * drawn == pytest.approx(round(result["near_copy_rate"] * drawn))
    assert result["near_copy_threshold"] is not None
    assert Image.open(out / "samples.png").size == (2 * 16, 10 * 16)
    assert "prompt_fidelity=" in proc.stdout


def test_near_copies_are_judged_against_the_heldout_quantile(tmp_path):
    """Training images drawn back are all near-copies; of 20 real held-out images, the 0.95 quantile of their
    own nearest-training cosine leaves exactly one above it."""
    from trendgen.config import SyntheticDataConfig
    from trendgen.data import build_dataset
    from trendgen.generator.metrics import Judge

    data = SyntheticDataConfig(
        name="synthetic", size=16, val_size=20, image_px=32, templates=["a {color} {garment}"]
    )
    train, heldout = (build_dataset(data, split) for split in ("train", "val"))
    judge = Judge(clip_folder(tmp_path), train.category_prompts())
    train_images = [train[i]["image"] for i in range(len(train))]
    reference = judge.set_reference(train_images, [heldout[i]["image"] for i in range(20)], quantile=0.95)
    assert len(set(reference.heldout_nearest.tolist())) == 20 and reference.heldout_nearest.max() < 1 - 1e-4
    copies = judge.score(train_images[:10], train.category_ids[:10])
    assert copies["near_copy_rate"] == 1.0 and copies["nearest_train_similarity"] == pytest.approx(1.0)
    real = judge.score([heldout[i]["image"] for i in range(20)], heldout.category_ids[:20])
    assert real["near_copy_rate"] == pytest.approx(1 / 20)


def test_eval_refuses_a_folder_that_is_not_a_generator(trained, tmp_path):
    args = ["mode=generator", f"generator_path={trained['clip']}", f"hydra.run.dir={tmp_path / 'eval'}"]
    proc = run_tool("trendgen-eval", args, tmp_path)
    assert (
        proc.returncode == 2
        and "is not a trendgen generator" in proc.stderr
        and "Traceback" not in proc.stderr
    )


def test_a_generator_without_its_text_encoder_is_one_line(tmp_path):
    from helpers.generator import SMALL_DATA

    proc = run_tool("trendgen-train-generator", [*SMALL_DATA, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert proc.returncode == 2
    assert "diffusion.text_encoder is not set" in proc.stderr and "Traceback" not in proc.stderr
