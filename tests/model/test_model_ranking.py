"""Marqo's ranking scores on worked examples (`trendgen.model.ranking`)."""

from __future__ import annotations

import math

import pytest
import torch

from trendgen.model.ranking import ranking_scores

# the gallery ranks g0 > g1 > g2 > g3 for the first query and g3 > g2 > g1 > g0 for the second
QUERIES = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
GALLERY = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [0.0, 1.0]])


def test_scores_of_two_queries_by_hand():
    relevance = torch.tensor([[False, True, False, True], [False, False, False, True]])
    scores = ranking_scores(QUERIES, GALLERY, lambda rows: relevance[rows])
    # query 1: hits at ranks 2 and 4; query 2: a hit at rank 1
    ndcg_1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    expected = {
        "mrr": (1 / 2 + 1) / 2,
        "recall@1": (0 + 1) / 2,
        "precision@1": (0 + 1) / 2,
        "recall@10": 1.0,
        "precision@10": (2 / 4 + 1 / 4) / 2,  # a gallery of 4: the share of all 4
        "ndcg@10": (ndcg_1 + 1) / 2,
        "map": ((1 / 2 + 2 / 4) / 2 + 1) / 2,  # query 1: precision 1/2 at its rank-2 hit, 2/4 at rank 4
    }
    assert scores == pytest.approx(expected)


def test_a_query_without_relevant_entries_is_left_out():
    relevance = torch.tensor([[False, False, False, False], [False, False, True, False]])
    scores = ranking_scores(QUERIES, GALLERY, lambda rows: relevance[rows], chunk_size=1)
    assert scores["mrr"] == pytest.approx(1 / 2) and scores["recall@1"] == 0.0
