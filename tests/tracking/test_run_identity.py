"""Each invocation is a W&B run of its own; a run that resumes itself continues its run."""

from __future__ import annotations

from helpers.design import compose_design

from trendgen.tracking.runs import RUN_ID_FILE, set_run_identity, wandb_run_id


def identity(out, resuming=False):
    cfg = compose_design([f"paths.output_dir={out}", "logger=wandb"])
    set_run_identity(cfg, resuming)
    return cfg.logger.wandb.id


def test_two_runs_into_one_folder_are_two_wandb_runs_and_a_resume_continues_the_last(tmp_path):
    first, second = identity(tmp_path / "out"), identity(tmp_path / "out")
    assert first != second  # another invocation, maybe other settings: never the same W&B run
    assert (
        identity(tmp_path / "out", resuming=True)
        == second
        == (tmp_path / "out" / RUN_ID_FILE).read_text().strip()
    )


def test_a_run_dir_from_before_resumes_under_its_old_id(tmp_path):
    assert identity(tmp_path / "old", resuming=True) == wandb_run_id(tmp_path / "old")
