"""Schemas of the design pipeline's groups: trend, captions, llm, generator (what draws), design."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from trendgen.config.ranges import ranged


@dataclass
class SyntheticTrendConfig:
    """A synthetic trending set drawn when `trend.images` is missing (the offline demo)."""

    n: int = ranged(200, low=1)
    planted: dict[str, str] = field(default_factory=dict)  # {garment, color, pattern}
    planted_share: float = ranged(0.35, low=0, high=1)
    baseline_n: int = ranged(200, low=0)  # drawn into trend.baseline_images when that is set and missing
    baseline_planted_share: float = ranged(0.05, low=0, high=1)
    seed: int = 0
    px: int = ranged(64, low=8)


@dataclass
class TrendConfig:
    """The trending photos and how they are clustered (see conf/trend/)."""

    images: str | None = None  # folder (recursive) or a text file of paths
    baseline_images: str | None = None  # an earlier set of looks, for emerging trends
    periods: Any = None  # [{label, images}, ...] or a CSV/JSONL index of (path, date): see trendgen.periods
    period_unit: str = "month"  # an index's dates binned by month | quarter | season | year
    bootstrap: int = ranged(2000, low=1)  # resamples per period for the share intervals and the growth test
    # of the share and growth intervals and of the timelines' forecasts
    confidence: float = ranged(0.95, low=0, high=1, open_low=True, open_high=True)
    # growth labels: the false-discovery rate over every growth test of a run (Benjamini-Hochberg)
    fdr: float = ranged(0.05, low=0, high=1, open_low=True, open_high=True)
    growth_window: int = ranged(8, low=2)  # growth is tested over the last this many periods
    season_length: int | None = ranged(
        None, low=1
    )  # null: from period_unit (12 months, 4 quarters, 2 seasons)
    # a cosine: photos this close to an earlier one (reposts) are dropped
    dedup: float | None = ranged(None, low=0, high=1, open_low=True)
    clusters: Any = "auto"  # "auto" (best silhouette over auto_range) or a fixed k
    auto_range: list[int] = field(default_factory=lambda: [2, 10])
    # auto: k is chosen on a seeded sample of at most this many embeddings
    auto_sample: int = ranged(20000, low=2)
    seed: int = 0
    n_init: int = ranged(10, low=1)
    target: str = "dominant"  # dominant | emerging
    exemplars: int = ranged(6, low=0)
    batch_size: int = ranged(64, low=1)
    num_workers: Any = "auto"  # DataLoader workers decoding photos: a count, or auto (see decode_workers)
    # one process: parts of this many batches are saved as they finish (resume)
    part_batches: int = ranged(16, low=1)
    devices: int = ranged(1, low=1)  # > 1: Lightning predict on that many devices per node, a shard per rank
    # > 1: under srun or torchrun, the ranks of every node embed; rank 0 runs the rest
    num_nodes: int = ranged(1, low=1)
    minibatch_threshold: int = ranged(50000, low=1)  # above this many embeddings, faiss k-means
    precision: str = (
        "auto"  # 32 | bf16 | int8 (ONNX Runtime, CPU) | auto: how embed, describe, rerank run CLIP
    )
    synthetic: SyntheticTrendConfig | None = None  # draw a synthetic set into `images` when it is missing


@dataclass
class CaptionsConfig:
    """The caption bank ranked against the trend (see conf/captions/)."""

    bank: str = MISSING
    top_k: int = ranged(12, low=1)
    per_facet: int = ranged(3, low=1)
    batch_size: int = ranged(256, low=1)
    look_template: str | None = "a {colour} {pattern} {garment}"  # core facets, ranked together as one look
    templates: list[str] = field(default_factory=list)  # prompt ensemble: each text as the mean over these


@dataclass
class LLMConfig:
    """The prompt writer (see conf/llm/)."""

    name: str = MISSING  # openai | template
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    timeout_s: float = ranged(30.0, low=0, open_low=True)
    # retries by the OpenAI SDK (its backoff, or the server's Retry-After)
    max_retries: int = ranged(3, low=0)
    temperature: float = ranged(0.7, low=0)
    max_tokens: int = ranged(200, low=1)
    system_prompt: str = ""
    user_template: str = ""


@dataclass
class GeneratorConfig:
    """The diffusion model that draws designs (see conf/generator/)."""

    name: str = MISSING  # small_sd | tiny | trained | none
    name_or_path: str | None = None  # trained: the OUTPUT/generator folder of trendgen-train-generator
    revision: str | None = None  # small_sd from the hub: the commit, tag or branch to load
    num_images: int = ranged(4, low=0)
    seed: int = 0
    steps: int = ranged(25, low=1)
    guidance: float = ranged(7.5, low=0)
    height: int | None = ranged(512, low=8)  # None: the generator's own size
    width: int | None = ranged(512, low=8)
    attention_slicing: bool = False
    cpu_offload: bool = False
    half_precision_on_cuda: bool = True
    negative_prompt: str = ""


@dataclass
class DesignConfig:
    """Which stages `trendgen-design` runs, in order."""

    stages: list[str] = field(
        default_factory=lambda: ["embed", "cluster", "describe", "prompt", "generate", "report"]
    )
    reuse: bool = True  # reuse a stage's artifacts when its inputs and config hash match
    store: str | None = None  # finished stages are also kept here by key, for reuse from a fresh run dir
