"""Reading trend.json for W&B and trendgen-compare: today's shapes (a share, the two-set mode's growth number)
and a timeline's (shares per period with intervals, growth as a dict with its label), and the W&B settings
each app derives from the one logger.wandb node."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from trendgen.config import CONF_DIR, register_configs
from trendgen.errors import TrendgenError
from trendgen.tracking.runs import RUN_ID_FILE
from trendgen.tracking.trend_record import attribute_rows, design_summary, growth_of, share_series, trend_rows
from trendgen.tracking.wandb_runs import eval_metrics, init_settings, start_run

TIMELINE = {
    "k": 2,
    "target_cluster": 1,
    "dominant_cluster": 0,
    "periods": [{"label": "2024-Q1"}, {"label": "2024-Q2"}, {"label": "2024-Q3"}],
    "clusters": [
        {
            "id": 0,
            "size": 60,
            "share": 0.6,
            "shares": [0.8, 0.7, 0.6],
            "intervals": [[0.7, 0.9], [0.6, 0.8], [0.52, 0.68]],
            "forecast": {"share": 0.5, "interval": [0.4, 0.6]},
            "growth": {"label": "fading", "slope": -0.1, "interval": [-0.15, -0.05]},
        },
        {
            "id": 1,
            "size": 40,
            "share": 0.4,
            "shares": {
                "2024-Q1": {"share": 0.2, "interval": [0.12, 0.28]},
                "2024-Q2": {"share": 0.3, "low": 0.22, "high": 0.38},
                "2024-Q3": {"share": 0.4, "interval": {"low": 0.32, "high": 0.48}},
            },
            "growth": {"label": "emerging", "slope": 0.1, "low": 0.05, "high": 0.15},
        },
    ],
    "captions": [{"text": "a red dress", "facet": "look", "score": 0.3}, {"text": "red", "facet": "colour"}],
    "designs": [
        {"path": "/nowhere/a.png", "seed": 1, "score": 0.7},
        {"path": "/x.png", "seed": 0, "score": 0.5},
    ],
}


def test_a_timeline_gives_shares_per_period_with_intervals_and_growth_labels() -> None:
    fading, emerging = TIMELINE["clusters"]
    assert share_series(TIMELINE, fading) == [
        {"period": "2024-Q1", "share": 0.8, "low": 0.7, "high": 0.9},
        {"period": "2024-Q2", "share": 0.7, "low": 0.6, "high": 0.8},
        {"period": "2024-Q3", "share": 0.6, "low": 0.52, "high": 0.68},
    ]
    assert [(s["period"], s["share"], s["low"], s["high"]) for s in share_series(TIMELINE, emerging)] == [
        ("2024-Q1", 0.2, 0.12, 0.28),
        ("2024-Q2", 0.3, 0.22, 0.38),
        ("2024-Q3", 0.4, 0.32, 0.48),
    ]
    assert growth_of(fading) == {"label": "fading", "slope": -0.1, "low": -0.15, "high": -0.05}
    assert growth_of(emerging) == {"label": "emerging", "slope": 0.1, "low": 0.05, "high": 0.15}
    rows = trend_rows(TIMELINE)
    assert [(r["share_low"], r["share_high"]) for r in rows] == [
        (0.52, 0.68),
        (0.32, 0.48),
    ]  # the last period's
    assert (rows[0]["forecast"], rows[0]["forecast_low"], rows[0]["forecast_high"]) == (0.5, 0.4, 0.6)
    assert rows[1]["forecast"] is None
    assert [r["target"] for r in rows] == [False, True]
    assert rows[1]["top_captions"] == "a red dress | red" and rows[0]["top_captions"] == ""
    assert design_summary(TIMELINE) == {
        "k": 2,
        "target_cluster": 1,
        "dominant_cluster": 0,
        "target_share": 0.4,
        "target_growth_label": "emerging",
        "target_growth_slope": 0.1,
        "top_caption": "a red dress",
        "best_design_score": 0.7,
    }


def test_the_attribute_series_of_a_timeline_give_a_row_per_caption_and_period() -> None:
    trend = {
        "periods": [{"label": "spring"}, {"label": "summer"}],
        "timeline": {
            "attributes": {
                "colour": {
                    "captions": ["red", "blue"],
                    "shares": [[0.25, 0.75], [0.5, 0.5]],
                    "intervals": [[[0.1, 0.4], [0.6, 0.9]], [[0.3, 0.7], [0.3, 0.7]]],
                    "growth": [{"label": "steady", "slope": 0.25, "interval": [-0.1, 0.6]}] * 2,
                    "forecast": None,
                }
            }
        },
    }
    summary, per_period = attribute_rows(trend)
    assert [(r["caption"], r["share"], r["share_low"], r["growth_slope"]) for r in summary] == [
        ("red", 0.5, 0.3, 0.25),
        ("blue", 0.5, 0.3, 0.25),
    ]
    assert [(r["caption"], r["period"], r["share"], r["high"]) for r in per_period] == [
        ("red", "spring", 0.25, 0.4),
        ("red", "summer", 0.5, 0.7),
        ("blue", "spring", 0.75, 0.9),
        ("blue", "summer", 0.5, 0.7),
    ]
    assert attribute_rows({}) == ([], [])


def test_the_two_set_mode_of_older_runs_is_two_periods_and_its_growth_a_slope_without_label() -> None:
    cluster = {"id": 0, "size": 7, "share": 0.35, "share_then": 0.05, "share_now": 0.35, "growth": 0.3}
    assert [(s["period"], s["share"]) for s in share_series({}, cluster)] == [
        ("baseline", 0.05),
        ("current", 0.35),
    ]
    assert growth_of(cluster) == {"label": None, "slope": 0.3, "low": None, "high": None}
    assert growth_of({"id": 0, "share": 1.0}) == {}  # one set: no growth
    assert design_summary({"clusters": [cluster], "target_cluster": 0})["target_growth_slope"] == 0.3


def compose_eval(overrides: list[str]):
    register_configs()
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("eval", overrides=overrides)


def test_every_app_reads_one_logger_node_and_eval_joins_a_given_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_marker_for_names")
    for name in ("WANDB_API_KEY", "WANDB_MODE"):  # unset here, restored afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    out = tmp_path / "eval"
    base = [f"paths.output_dir={out}", "logger=wandb", "logger.wandb.tags=[a,${oc.env:HF_TOKEN}]"]
    assert init_settings(compose_eval([f"paths.output_dir={out}"])) is None  # default: no W&B
    own = init_settings(compose_eval([*base, "logger.wandb.offline=true"]))
    assert os.environ["WANDB_MODE"] == "offline"  # no key: offline, as training
    assert own["id"] == (out / RUN_ID_FILE).read_text().strip() and own["mode"] == "offline"
    assert own["job_type"] == "eval" and own["project"] == "trendgen" and own["dir"] == str(out)
    assert own["tags"] == ["a", "<redacted>"]
    assert not {"_target_", "save_dir", "log_model", "offline"} & set(own)  # WandbLogger's own keys
    joined_cfg = compose_eval([*base, "logger.wandb.id=trainrun123", "logger.wandb.name=x"])
    joined = init_settings(joined_cfg, join_given_run=True)  # what trendgen-eval does with an id given
    assert joined["id"] == "trainrun123" and joined["resume"] == "allow"
    assert not {"name", "group", "job_type", "tags"} & set(joined)  # the training run keeps its own


def test_eval_logs_numbers_under_eval_and_leaves_nulls_out() -> None:
    result = {"zero_shot_accuracy": 0.5, "image_to_text_recall@10": None, "n_images": 16, "split": "test"}
    result |= {"per_category": {"dress": 0.75}, "skipped_images": [{"image": "a.png", "reason": "empty"}]}
    assert eval_metrics(result) == {
        "eval/zero_shot_accuracy": 0.5,
        "eval/n_images": 16.0,
        "eval/per_category/dress": 0.75,
        "eval/split": "test",
    }


@pytest.mark.parametrize("growth", [float("nan"), True, "up"])
def test_growth_that_is_not_a_number_or_a_dict_is_no_growth(growth) -> None:
    assert growth_of({"growth": growth}) == {}


def test_a_run_path_names_entity_project_and_id_and_a_bad_id_is_one_clear_error(tmp_path: Path) -> None:
    base = [f"paths.output_dir={tmp_path / 'eval'}", "logger=wandb", "logger.wandb.offline=true"]
    settings = init_settings(
        compose_eval([*base, "logger.wandb.id=team/fashion/abc123"]), join_given_run=True
    )
    assert (settings["entity"], settings["project"], settings["id"]) == ("team", "fashion", "abc123")
    with pytest.raises(TrendgenError, match=r"logger.wandb: W&B refused the run \(Run ID cannot contain"):
        start_run(compose_eval([*base, "logger.wandb.id='bad:id'"]), join_given_run=True)
