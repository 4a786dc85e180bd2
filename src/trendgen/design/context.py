"""What the stages of one design run share: the config, the models (loaded on first use), the identities
that key their results, and each finished stage's result. Built once per run, before any stage; what it
checks at construction is refused before any work starts."""

from __future__ import annotations

from typing import Any

from trendgen.design.caption_bank import flatten, load_bank, resolve_bank_path
from trendgen.design.generate import generator_kind
from trendgen.design.inputs import (
    check_cluster_count,
    generator_identity,
    load_design_clip,
    model_identity,
    prepare_synthetic_trend,
)
from trendgen.identity import content_hash
from trendgen.inference.clip_forward import decode_workers
from trendgen.inference.precision import ClipTowers, requested_precision


class StageContext:
    """The config, the models, the identities and the results the design stages read.

    `results[name]` is the typed result of each finished stage (`trendgen.design.results`); `keys[name]`
    its key; `group` the EmbedGroup when srun or torchrun started several ranks (this is rank 0)."""

    def __init__(self, cfg: Any, group: Any = None, config_hash: str = "") -> None:
        self.cfg = cfg
        self.config_hash = config_hash  # of the whole resolved config: every design's PNG carries it
        self.group = group
        self.results: dict[str, Any] = {}
        self.keys: dict[str, str] = {}
        self._clip: Any = None
        self._towers: ClipTowers | None = None
        self._generator_source: str | None = None
        prepare_synthetic_trend(cfg)
        self.model_id = model_identity(cfg.model)
        self.generator_id = generator_identity(cfg.generator)
        check_cluster_count(cfg.trend)
        requested_precision(cfg.trend.precision)  # a wrong value is said before any work
        decode_workers(cfg.trend.num_workers)
        if generator_kind(cfg.generator).check_at_start:  # an unknown name fails here too
            self.generator_source()  # a folder that is not a trendgen generator is refused before any work
        self.bank_id = content_hash(resolve_bank_path(cfg.captions.bank))

    @property
    def clip(self) -> Any:
        """(model, tokenizer, processor) of the design CLIP, loaded on first use."""
        if self._clip is None:
            self._clip = load_design_clip(self.cfg.model)
        return self._clip

    @property
    def towers(self) -> ClipTowers:
        """The CLIP towers at `trend.precision`, resolved once per run (`trendgen.inference.precision`)."""
        if self._towers is None:
            self._towers = ClipTowers(
                lambda: self.clip, self.cfg.trend.precision, self.model_id, self.cfg.paths.cache_dir
            )
        return self._towers

    @property
    def towers_resolved(self) -> str | None:
        """The precision `trend.precision` resolved to, once a stage asked for the towers; else None."""
        return None if self._towers is None else self._towers.precision

    def generator_source(self) -> str | None:
        """Where the generator's pipeline loads from; None for a generator that draws nothing."""
        kind = generator_kind(self.cfg.generator)
        if not kind.draws:
            return None
        if self._generator_source is None:
            texts = flatten(load_bank(self.cfg.captions.bank))[0] if kind.reads_bank else []
            self._generator_source = kind.source(self.cfg.generator, self.cfg.paths.cache_dir, texts)
        return self._generator_source
