"""Every app in W&B, offline: a design sweep (tables, images, prompt, report artifact, group and names), eval
logged into its training run, training's exported model/ as an artifact, and trendgen-compare of design runs.

The runs read their secrets from the environment (marker values here); no file anywhere under the test's
root (run dirs, W&B run files, W&B's cache, config and staging dirs) may hold one.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.apps import run_app
from helpers.design import DESIGN_BIN, REPO, make_tiny_clip, write_looks
from helpers.scale import TINY_TRAIN, sweep_points
from helpers.wandb_offline import leaks, offline_runs, wandb_env
from hydra import compose, initialize_config_dir

from trendgen.config import CONF_DIR, register_configs
from trendgen.tracking.compare import compare_sweep
from trendgen.tracking.runs import RUN_ID_FILE


def wandb_teardown() -> None:
    """Stop this process's W&B service, as the end of an app's process does: its run files are then whole
    (in a long-lived process the service may still be writing them after `run.finish()`)."""
    import wandb

    wandb.teardown()


# ----------------------------------------------------------------------------------------------------
# trendgen-design -m trend.clusters=2,3 logger=wandb (a real two-point sweep through the console script)
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def design_sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wandb_design")
    model = make_tiny_clip(root / "model")
    looks = write_looks(root / "looks", n=12, share=0.5)
    baseline = write_looks(root / "baseline", n=12, seed=1, share=0.1)
    sweep = root / "sweep"
    args = [
        "-m",
        f"hydra.sweep.dir={sweep}",
        f"model.name_or_path={model}",
        f"trend.images={looks}",
        f"trend.baseline_images={baseline}",
        "trend.target=emerging",
        "trend.clusters=2,3",
        "trend.n_init=2",
        "trend.num_workers=0",
        "trend.exemplars=2",
        f"paths.cache_dir={root / 'cache'}",
        "generator.num_images=2",
        "generator.steps=2",
        "generator.height=64",
        "generator.width=64",
        "logger=wandb",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(wandb_env(root), TRENDGEN_ROOT=str(REPO), OMP_NUM_THREADS="1")
    result = run_app([DESIGN_BIN, *args], timeout=300, env=env, cwd=root)
    assert result.returncode == 0, result.stderr[-4000:]
    return sweep


def test_each_design_run_logs_its_trend_prompt_designs_and_report(design_sweep: Path) -> None:
    points = sweep_points(design_sweep)
    assert len(points) == 2
    for point in points:
        trend = json.loads((point / "trend.json").read_text())
        (run,) = offline_runs(point)
        hydra_cfg = yaml.safe_load((point / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert run.run.run_group == design_sweep.name  # one group per sweep
        assert run.run.display_name == hydra_cfg["job"]["override_dirname"]  # named from its overrides
        assert run.run.run_id == (point / RUN_ID_FILE).read_text().strip() and run.run.job_type == "design"
        assert run.config["trend"]["clusters"] == trend["k"] and run.config["task_name"] == "design"
        assert "logger" in run.config and run.exit_code == 0

        # the trend table: one row per cluster of trend.json, its share now with the interval, its growth
        rows = run.rows("trend/clusters")
        assert [r["cluster"] for r in rows] == [c["id"] for c in trend["clusters"]]
        for row, cluster in zip(rows, trend["clusters"], strict=True):
            assert row["share"] == cluster["share"] and row["size"] == cluster["size"]
            assert [row["share_low"], row["share_high"]] == cluster["intervals"][-1]
            growth = cluster["growth"]
            assert (row["growth_label"], row["growth_slope"]) == (growth["label"], growth["slope"])
            assert [row["growth_low"], row["growth_high"]] == growth["interval"]
            assert row["target"] == (cluster["id"] == trend["target_cluster"])
        target = next(r for r in rows if r["target"])
        assert target["top_captions"].split(" | ") == [c["text"] for c in trend["captions"][:3]]
        # each cluster's share per period (baseline, then current) in the history and, with intervals, a table
        history = [h for h in run.history if "trend/period_index" in h]
        assert [h["trend/period"] for h in history] == [p["label"] for p in trend["periods"]]
        assert [p["label"] for p in trend["periods"]] == ["baseline", "current"]
        shares = run.rows("trend/shares")
        for cluster in trend["clusters"]:
            assert [h[f"trend/share/cluster_{cluster['id']}"] for h in history] == cluster["shares"]
            mine = [r for r in shares if r["cluster"] == cluster["id"]]
            assert [[r["low"], r["high"]] for r in mine] == cluster["intervals"]
        # the attribute series: every caption of every facet, its last share and growth
        attributes = run.rows("trend/attributes")
        series = trend["timeline"]["attributes"]
        assert len(attributes) == sum(len(facet["captions"]) for facet in series.values())
        first = next(a for a in attributes if a["facet"] == "garment")
        assert first["caption"] == series["garment"]["captions"][0]
        assert first["share"] == series["garment"]["shares"][-1][0]
        assert first["growth_label"] == series["garment"]["growth"][0]["label"]
        captions = run.rows("trend/captions")
        assert [(c["text"], c["score"]) for c in captions] == [
            (c["text"], c["score"]) for c in trend["captions"]
        ]

        # the designs, best first, as the very PNGs the run drew, with their rerank scores
        designs = run.rows("designs/table")
        assert [(d["seed"], d["score"]) for d in designs] == [
            (d["seed"], d["score"]) for d in trend["designs"]
        ]
        images = sorted(
            p.read_bytes() for p in (run.folder / "files" / "media" / "images").rglob("images_*.png")
        )
        assert images == sorted(Path(d["path"]).read_bytes() for d in trend["designs"])

        summary = run.summary
        assert summary["k"] == trend["k"] and summary["target_cluster"] == trend["target_cluster"]
        assert summary["best_design_score"] == trend["designs"][0]["score"]
        assert summary["prompt/text"] == trend["prompt"]["text"] and summary["prompt/source"] == "template"
        assert summary["target_reason"] == trend["target_reason"]
        # report.html, trend.json and prompt.txt as one artifact, their bytes as the run wrote them
        report = run.artifact("report")
        assert report.name == f"design-{run.run.run_id}"
        contents = {entry.path: entry for entry in report.manifest.contents}
        assert set(contents) == {"report.html", "trend.json", "prompt.txt"}
        assert contents["report.html"].size == (point / "report.html").stat().st_size


def test_no_secret_reaches_any_file_of_the_design_sweep(design_sweep: Path) -> None:
    assert leaks(design_sweep.parent) == []


def test_compare_tabulates_design_runs(design_sweep: Path, tmp_path: Path) -> None:
    markdown, _, csv_path = compare_sweep(design_sweep)
    with csv_path.open(newline="") as handle:
        table = {int(row["trend.clusters"]): row for row in csv.DictReader(handle)}
    assert set(table) == {2, 3}
    for point in sweep_points(design_sweep):
        trend = json.loads((point / "trend.json").read_text())
        row = table[trend["k"]]
        target = next(c for c in trend["clusters"] if c["id"] == trend["target_cluster"])
        assert float(row["k"]) == trend["k"] and row["status"] == "finished"
        assert float(row["target_share"]) == target["share"]
        assert row["target_growth_label"] == target["growth"]["label"]
        assert float(row["target_growth_slope"]) == target["growth"]["slope"]
        assert row["top_caption"] == trend["captions"][0]["text"]
        assert float(row["best_design_score"]) == max(d["score"] for d in trend["designs"])
    header = next(line for line in markdown.splitlines() if line.startswith("| job"))
    assert header.split(" | ")[3:] == [
        "k",
        "target_share",
        "target_growth_label",
        "target_growth_slope",
        "top_caption",
        "best_design_score |",
    ]

    # a trend.json from before timelines (growth: share now minus then, no label) sits in the same table
    copy = shutil.copytree(design_sweep, tmp_path / "sweep", ignore=shutil.ignore_patterns("wandb", "embed"))
    point = sweep_points(copy)[0]
    trend = json.loads((point / "trend.json").read_text())
    for cluster in trend["clusters"]:
        cluster["growth"] = 0.05
    (point / "trend.json").write_text(json.dumps(trend))
    _, _, csv_path = compare_sweep(copy, sort_by="best_design_score")
    with csv_path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle)]
    scores = [float(row["best_design_score"]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    older = next(row for row in rows if row["point"] == point.name)
    assert older["target_growth_label"] == "" and float(older["target_growth_slope"]) == 0.05


# ----------------------------------------------------------------------------------------------------
# training with logger.wandb.log_model=true, then trendgen-eval into that training run
# ----------------------------------------------------------------------------------------------------


def compose_app(name: str, overrides: list[str]) -> Any:
    register_configs()
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose(name, overrides=overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 2-step training run (in this process) with W&B offline and `logger.wandb.log_model=true`."""
    from trendgen.recipes.train import train

    root = tmp_path_factory.mktemp("wandb_train")
    run_dir = root / "train"
    overrides = [f"paths.output_dir={run_dir}", f"paths.root_dir={root}", "logger=wandb"]
    overrides += ["logger.wandb.log_model=true", "trainer.max_steps=2", "data.test_size=16", *TINY_TRAIN]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in wandb_env(root).items():
            patch.setenv(key, value)
        patch.setenv("OMP_NUM_THREADS", "1")
        train(compose_app("train", overrides))
        wandb_teardown()
    return run_dir


def test_log_model_adds_the_exported_model_folder_as_a_model_artifact(trained: Path) -> None:
    (run,) = offline_runs(trained)
    exported = [a for a in run.artifacts if a.type == "model" and a.name.startswith("exported-")]
    assert len(exported) == 1, [a.name for a in run.artifacts]
    artifact = exported[0]
    assert artifact.name == f"exported-model-{run.run.run_id}"
    assert {"latest", "last"} <= set(artifact.aliases)  # 2 steps, no validation: the last weights
    files = {
        p.relative_to(trained / "model").as_posix(): p for p in (trained / "model").rglob("*") if p.is_file()
    }
    contents = {entry.path: entry for entry in artifact.manifest.contents}
    assert set(contents) == set(files) and "config.json" in contents
    assert all(contents[name].size == path.stat().st_size for name, path in files.items())
    metadata = json.loads(artifact.metadata)
    assert metadata["weights"] == "last" and metadata["checkpoint"] is None and metadata["global_step"] == 2
    scores = json.loads((trained / "metrics.json").read_text())
    assert (
        metadata["metrics"]["test/loss"] == scores["test/loss"] and "val/recall_mean" in metadata["metrics"]
    )
    # the local paths are the exported files themselves: nothing was copied to stage a 600 MB model
    assert {Path(entry.local_path) for entry in contents.values()} == set(files.values())


def test_eval_logs_its_metrics_into_the_training_run(trained: Path, tmp_path: Path) -> None:
    from trendgen.cli.evaluate import run as run_eval

    (training,) = offline_runs(trained)
    eval_dir = tmp_path / "eval"
    overrides = [f"paths.output_dir={eval_dir}", f"model.name_or_path={trained / 'model'}", "data.split=test"]
    overrides += [
        "data.size=48",
        "data.test_size=16",
        "data.num_workers=0",
        "data.batch_size=8",
        "logger=wandb",
    ]
    overrides += [f"logger.wandb.id={training.run.run_id}", "+run_note=${oc.env:HF_TOKEN}"]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in wandb_env(tmp_path).items():
            patch.setenv(key, value)
        run_eval(compose_app("eval", overrides))
        wandb_teardown()
    scores = json.loads((eval_dir / "eval.json").read_text())
    (run,) = offline_runs(eval_dir)
    assert run.run.run_id == training.run.run_id and run.run.resume  # the training run, resumed
    assert run.run.display_name == "" and run.run.job_type == ""  # its name and job type left alone
    logged = {k: v for row in run.history for k, v in row.items() if not k.startswith("_")}
    expected = {f"eval/{k}": v for k, v in scores.items() if isinstance(v, int | float)}
    expected.update(  # the ranking tasks, one key per task and score
        {f"eval/tasks/{t}/{k}": v for t, task in scores["tasks"].items() for k, v in task.items()}
    )
    assert logged == expected and "eval/zero_shot_accuracy" in logged  # under eval/, beside training's test/
    assert "eval/tasks/category_to_product/mrr" in logged
    assert run.summary["eval/split"] == "test" and run.summary["eval/n_images"] == 16
    assert run.config["eval"]["model"]["name_or_path"] == str(trained / "model")  # eval's config, apart
    assert run.config["eval"]["run_note"] == "<redacted>"
    assert leaks(tmp_path) == [] and leaks(trained.parent) == []


def test_a_generator_eval_logs_its_scores_and_sample_grid(tmp_path: Path) -> None:
    """mode=generator: the numbers of eval_generator.json under eval/ and samples.png as an image."""
    from PIL import Image

    from trendgen.tracking.wandb_runs import log_eval_run

    out = tmp_path / "eval"
    out.mkdir()
    Image.new("RGB", (48, 32), (200, 30, 60)).save(out / "samples.png")
    result = {"prompt_fidelity": 0.75, "prompt_fidelity/dress": 1.0, "clip_score": 71.5, "steps": 20}
    result |= {"generator": str(tmp_path / "generator"), "prompts": ["a photo of a dress"]}
    cfg = compose_app("eval", [f"paths.output_dir={out}", "mode=generator", "logger=wandb"])
    with pytest.MonkeyPatch.context() as patch:
        for key, value in wandb_env(tmp_path).items():
            patch.setenv(key, value)
        log_eval_run(cfg, result, samples=out / "samples.png")
        wandb_teardown()
    (run,) = offline_runs(out)
    assert run.run.run_id == (out / RUN_ID_FILE).read_text().strip() and run.run.job_type == "eval"  # its own
    assert run.config["mode"] == "generator"
    assert {
        k: run.summary[k] for k in ("eval/prompt_fidelity", "eval/prompt_fidelity/dress", "eval/steps")
    } == {
        "eval/prompt_fidelity": 0.75,
        "eval/prompt_fidelity/dress": 1.0,
        "eval/steps": 20,
    }
    assert run.summary["eval/generator"] == str(tmp_path / "generator")
    (image,) = (run.folder / "files" / "media" / "images" / "eval").glob("samples_*.png")
    assert image.read_bytes() == (out / "samples.png").read_bytes()
