"""scripts/forgetting.py: the goal column counts a row only when it keeps 95% and reaches 90% of the gain."""

from __future__ import annotations

import pytest
from helpers.scripts import load_script


def figures(label: str, fmnist: float, zero_shot: float, recall: float) -> dict:
    return {
        "weights": label,
        "fashion_mnist_zero_shot": fmnist,
        "synthetic_zero_shot": zero_shot,
        "synthetic_t2i_R@10": recall,
        "synthetic_i2t_R@10": 0.0,
    }


def test_goal_needs_both_bars_against_the_start_and_the_reference():
    forgetting = load_script("forgetting")
    start = figures("start", 0.80, 0.10, 0.10)
    reference = figures("full", 0.40, 0.30, 0.60)  # gains: +0.20 zero-shot, +0.50 recall
    rows = [
        figures("both", 0.761, 0.281, 0.551),  # kept 95.1%, 90.5% of the zero-shot gain, 90.2% of recall's
        figures("zero-shot only", 0.77, 0.29, 0.50),  # recall gain 80%
        figures("forgets", 0.759, 0.30, 0.60),  # kept 94.9%
        figures("learns too little", 0.80, 0.279, 0.10),  # zero-shot gain 89.5%
    ]
    forgetting.add_shares([start, reference, *rows], start, reference)
    assert [r["goal"] for r in rows] == [["zero-shot", "R@10"], ["zero-shot"], [], []]
    assert rows[1]["gain_R@10"] == pytest.approx(0.8)
    assert reference["kept"] == pytest.approx(0.5) and reference["gain_zero_shot"] == pytest.approx(1.0)
    table = forgetting.markdown([start, *rows])
    row = "| zero-shot only | – | – | 0.770 (96.2%) | 0.290 (95%) | 0.500 (80%) | 0.000 | zero-shot |"
    assert row in table.splitlines()
