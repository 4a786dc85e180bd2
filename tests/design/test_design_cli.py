"""`trendgen-design` as a user runs it (a subprocess): bad input gives one line on stderr and exit code 2, no
traceback; a good run writes trend.json, prompt.txt and report.html into its Hydra run dir."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers.design import make_tiny_clip, run_cli, write_looks


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("cli_model") / "model")


@pytest.fixture(scope="module")
def looks(tmp_path_factory):
    return write_looks(tmp_path_factory.mktemp("cli_looks") / "looks", n=6)


def assert_user_error(result, *fragments: str) -> None:
    errors = [line for line in result.stderr.splitlines() if line.startswith("trendgen: error:")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    assert len(errors) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0]


def common(tmp_path, model, images) -> list[str]:
    return [
        f"model.name_or_path={model}",
        f"trend.images={images}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "trend.clusters=2",
        "trend.num_workers=0",
    ]


def test_missing_path(tmp_path, model):
    result = run_cli(common(tmp_path, model, tmp_path / "no_such_folder"), tmp_path)
    assert_user_error(result, "trend.images: no such file or folder", "no_such_folder")


def test_images_not_set(tmp_path, model):
    result = run_cli([*common(tmp_path, model, "x"), "trend.images=null"], tmp_path)
    assert_user_error(result, "trend.images is not set")


def test_empty_folder(tmp_path, model):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no pictures here")
    result = run_cli(common(tmp_path, model, tmp_path / "empty"), tmp_path)
    assert_user_error(result, "no image files", "empty")


def test_more_clusters_than_images(tmp_path, model, looks):
    result = run_cli([*common(tmp_path, model, looks), "trend.clusters=7"], tmp_path)
    assert_user_error(result, "trend.clusters=7 is more than the 6 images")


def test_missing_model_folder(tmp_path, looks):
    result = run_cli(common(tmp_path, tmp_path / "no_model", looks), tmp_path)
    assert_user_error(result, "model folder not found", "no_model")


def test_unreadable_model_folder(tmp_path, model, looks):
    broken = shutil.copytree(model, tmp_path / "broken_config")
    (broken / "config.json").write_text("{not json")
    assert_user_error(run_cli(common(tmp_path, broken, looks), tmp_path), "unreadable", "config.json")


def test_nothing_usable(tmp_path, model):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "page.jpg").write_text("<html></html>")
    result = run_cli([*common(tmp_path, model, bad), "trend.clusters=1"], tmp_path)
    assert_user_error(result, "none of the 2 files could be used", "empty file")


def test_good_run_writes_its_outputs_in_the_hydra_run_dir(tmp_path, model, looks):
    result = run_cli([*common(tmp_path, model, looks), "generator=none"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "hydra_run"
    trend = json.loads((run_dir / "trend.json").read_text())
    assert trend["images"]["used"] == 6 and trend["designs"] == []
    assert (run_dir / "prompt.txt").read_text().strip() == trend["prompt"]["text"]
    assert (run_dir / "report.html").is_file()
    assert f"report: {run_dir / 'report.html'}" in result.stdout


def test_a_worker_count_that_is_no_count(tmp_path, model, looks):
    result = run_cli([*common(tmp_path, model, looks), "trend.num_workers=two"], tmp_path)
    assert_user_error(result, "trend.num_workers must be auto or a count", "'two'")
