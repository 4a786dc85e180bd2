"""trendgen-compare on a real 2-point sweep: one table (markdown + CSV), never overwriting, clear errors."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import yaml
from helpers.apps import run_app
from helpers.scale import VENV_BIN, LocalSweep, sweep_points

from trendgen.tracking.compare import compare_sweep


def run_compare(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(VENV_BIN / "trendgen-compare"), *args]
    return run_app(cmd, timeout=60)


def markdown_rows(markdown: str) -> list[dict[str, str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)) for line in lines[2:]
    ]


def copy_sweep(local_sweep: LocalSweep, dest: Path) -> Path:
    """A private copy of the shared sweep (without the heavy model folders), so tests may change it."""
    shutil.copytree(local_sweep.sweep_dir, dest, ignore=shutil.ignore_patterns("model", "*.ckpt", "wandb"))
    return dest


def test_compare_tables_every_point_with_its_overrides_and_final_metrics(local_sweep: LocalSweep, tmp_path):
    sweep = copy_sweep(local_sweep, tmp_path / "sweep")
    result = run_compare(str(sweep))
    assert result.returncode == 0, result.stderr
    rows = markdown_rows(result.stdout)
    assert len(rows) == 2
    assert "model.optimizer.lr" in rows[0]  # the swept override is a column
    assert "data.size" not in rows[0]  # shared overrides sit above the table
    assert "`data.size=48`" in result.stdout
    points = {
        int(yaml.safe_load((p / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["num"]): p
        for p in sweep_points(sweep)
    }
    recalls = []
    for row in rows:
        metrics = json.loads((points[int(row["job"])] / "metrics.json").read_text())
        assert row["status"] == "finished"
        assert float(row["val/recall_mean"]) == float(f"{metrics['val/recall_mean']:.4g}")
        recalls.append(metrics["val/recall_mean"])
    assert recalls == sorted(recalls, reverse=True)  # best first
    assert (sweep / "compare.md").read_text() == result.stdout

    with (sweep / "compare.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert {float(row["model.optimizer.lr"]) for row in table} == {1e-3, 1e-4}
    assert {row["data.size"] for row in table} == {"48"}  # the CSV keeps every override
    for row in table:
        metrics = json.loads((sweep / row["point"] / "metrics.json").read_text())
        assert float(row["val/recall_mean"]) == metrics["val/recall_mean"]


def test_compare_never_overwrites_an_earlier_table(local_sweep: LocalSweep, tmp_path):
    sweep = copy_sweep(local_sweep, tmp_path / "sweep")
    (sweep / "compare.md").write_text("my notes\n")
    _, md_path, csv_path = compare_sweep(sweep)
    _, md_again, csv_again = compare_sweep(sweep, sort_by="train/loss", descending=False)
    assert (sweep / "compare.md").read_text() == "my notes\n"
    assert [md_path.name, md_again.name] == ["compare-1.md", "compare-2.md"]
    assert [csv_path.name, csv_again.name] == ["compare.csv", "compare-1.csv"]


def test_unfinished_point_falls_back_to_its_csv_log(local_sweep: LocalSweep, tmp_path):
    sweep = copy_sweep(local_sweep, tmp_path / "sweep")
    unfinished = sweep_points(sweep)[0]
    (unfinished / "metrics.json").unlink()
    with (unfinished / "csv" / "metrics.csv").open(newline="") as handle:
        logged = [row["val/recall_mean"] for row in csv.DictReader(handle) if row.get("val/recall_mean")]
    markdown, _, _ = compare_sweep(sweep)
    statuses = sorted(row["status"] for row in markdown_rows(markdown))
    assert statuses == ["finished", "partial"]
    with (sweep / "compare.csv").open(newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["point"] == unfinished.name)
    assert row["status"] == "partial"
    assert float(row["val/recall_mean"]) == float(logged[-1])


def test_bad_sweep_dir_is_one_clear_line(tmp_path):
    missing = run_compare(str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert (
        missing.stderr.strip()
        == f"trendgen: error: sweep dir '{tmp_path / 'nope'}' does not exist or is not a directory"
    )
    empty = run_compare(str(tmp_path))
    assert empty.returncode == 2
    assert "no sweep points" in empty.stderr and "Traceback" not in empty.stderr
    assert not list(tmp_path.iterdir())  # nothing written for a dir that is not a sweep
