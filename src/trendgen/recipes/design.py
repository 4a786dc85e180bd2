"""The design pipeline: trending photos -> trend -> captions -> prompt -> designs -> report.

`design.stages` names the stages to run (always in the order of `STAGES`). Each stage is declared beside its
code (`STAGE` in `trendgen.design.embed`, `.cluster`, `.describe`, `.prompt`, `.generate`: what it reads,
what its key covers, how it runs and loads; see `trendgen.design.store.Stage`). Its artifacts live in
`<output_dir>/<stage>/` with a manifest holding its key; a stage whose key matches is reused, so a rerun with
another llm or generator does not embed again, and a stage whose inputs wrote something new runs again. A
stage left out of `design.stages` but needed by a later one must have fresh artifacts. The run ends with
`trend.json` (the one machine-readable record), `prompt.txt`, `designs/` and `report.html` in the output dir.
"""

from __future__ import annotations

import filecmp
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from trendgen.design.context import StageContext
from trendgen.design.inputs import (
    load_design_clip,
    requested_stages,
)
from trendgen.design.results import RecordContext
from trendgen.design.stages import STAGES
from trendgen.design.store import RecordStage, Stage, StageDir
from trendgen.errors import TrendgenError
from trendgen.files import copy_file, write_json, write_text
from trendgen.identity import stable_hash
from trendgen.training.launch import check_slurm_layout, slurm_launched, under_torchrun

log = logging.getLogger(__name__)

TREND_JSON = "trend.json"
PROMPT_TXT = "prompt.txt"
REPORT_HTML = "report.html"


def config_hash(cfg: Any) -> str:
    """A hash of the resolved config, paths, hydra and logger settings left out (they change no result)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in ("paths", "hydra", "logger"):
        plain.pop(key, None)
    return stable_hash(plain)


class DesignRun:
    """One run of the pipeline: its stages' folders, keys, status and times, over the `StageContext` the
    stages share (the config, the models, identities and each stage's result)."""

    def __init__(self, cfg: Any, group: Any = None) -> None:
        self.cfg = cfg
        self.group = group
        self.out = Path(str(cfg.paths.output_dir))
        self.store = Path(str(cfg.design.store)).expanduser() if cfg.design.store else None
        self.requested = requested_stages(cfg, list(STAGES))
        self.config_hash = config_hash(cfg)
        self.ctx = StageContext(cfg, group, self.config_hash)  # checks models, generator, k, precision
        self.seconds: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self.results = self.ctx.results
        self.keys = self.ctx.keys

    def run(self) -> dict[str, Any]:
        last = list(STAGES).index(self.requested[-1])
        contents: dict[str, str] = {}  # the digest of each finished stage's artifacts
        for name, spec in list(STAGES.items())[: last + 1]:
            if not isinstance(spec, Stage):
                continue  # a record stage (the report) runs once trend.json is complete
            start = time.perf_counter()
            self.keys[name] = spec.key(self.ctx, contents)
            folder = StageDir(name, self.out / name, self.keys[name], self.store)
            wanted = name in self.requested
            fresh = (self.cfg.design.reuse or not wanted) and folder.is_fresh()  # checked once: it hashes
            if wanted and not fresh:
                log.info("stage %s: running", name)
                partial = folder.prepare()
                files, info = spec.run(self.ctx, partial)
                folder.commit(partial, files, info)
                self.status[name] = "ran"
            elif fresh:
                self.status[name] = "reused"
            else:
                raise TrendgenError(
                    f"design.stages: {self.requested[-1]} needs the results of the {name} stage, which has "
                    f"not run with this config: add {name} to design.stages"
                )
            if name == "embed" and self.group is not None:
                self.group.close()  # the other ranks are done (or were never needed); the rest runs here
            contents[name] = folder.content()
            self.results[name] = spec.load(folder.path)
            self.seconds[name] = round(time.perf_counter() - start, 3)
        trend = self.trend_record()
        self.write_outputs(trend)
        return trend

    def trend_record(self) -> dict[str, Any]:
        """trend.json: each stage's own part (images, clusters, captions, prompt, designs), then the config
        hash, the precision that ran each tower and the stage times."""
        trend: dict[str, Any] = {"config_hash": self.config_hash, "output_dir": str(self.out)}
        context = RecordContext(confidence=float(self.cfg.trend.confidence), publish=self._publish_design)
        for result in self.results.values():
            result.record_into(trend, context)
        if trend.get("clusters") or (trend.get("timeline") or {}).get("attributes"):  # growth tests' stages
            from trendgen.trends.timeline import growth_family  # scipy.stats: not for an embed-only run

            growth_family(trend, float(self.cfg.trend.fdr))  # every growth test of the run: one BH family
        trend["precision"] = self.precision_record()
        trend["stage_seconds"] = self.seconds
        trend["stage_status"] = self.status
        return trend

    def precision_record(self) -> dict[str, Any]:
        """What ran each CLIP tower: `requested` (trend.precision), `resolved` (what auto became, or int8),
        and per stage that ran one (or was reused) its precision, runtime, device and any fallback reason."""
        stages = {name: getattr(result, "precision", None) for name, result in self.results.items()}
        stages = {name: rec for name, rec in stages.items() if rec}
        record: dict[str, Any] = {"requested": str(self.cfg.trend.precision)}
        if self.ctx.towers_resolved is not None:
            record["resolved"] = self.ctx.towers_resolved
        return {**record, "stages": stages}

    def _publish_design(self, src: Path) -> Path:
        """A copy of a design in `<output_dir>/designs/` (a different file of that name is never replaced)."""
        folder = self.out / "designs"
        dst = folder / src.name
        if dst.is_file() and filecmp.cmp(dst, src, shallow=False):
            return dst
        if dst.exists():
            from trendgen.design.generate import unique_path

            dst = unique_path(folder, src.stem)
        return copy_file(src, dst)

    def write_outputs(self, trend: dict[str, Any]) -> None:
        """prompt.txt and trend.json, each written whole; then the record stages (the report), after which
        trend.json is written again with where they wrote and how long they took."""
        if "prompt" in trend:
            write_text(self.out / PROMPT_TXT, trend["prompt"]["text"] + "\n")
        # the machine-readable record first: a report that fails keeps it
        write_json(self.out / TREND_JSON, trend)
        records = [name for name in self.requested if isinstance(STAGES[name], RecordStage)]
        for name in records:
            start = time.perf_counter()
            STAGES[name].run(trend, self.results, self.out)
            self.seconds[name] = round(time.perf_counter() - start, 3)
            self.status[name] = "ran"
            trend[name] = str(self.out / REPORT_HTML)
        if records:
            write_json(self.out / TREND_JSON, trend)


def join_embed_group(trend_cfg: Any) -> Any:
    """The `EmbedGroup` of this run's ranks when srun or torchrun started several; None for one process."""
    check_slurm_layout(trend_cfg, owner="trend")  # srun's tasks per node and nodes match the config
    devices, num_nodes = int(trend_cfg.devices), int(trend_cfg.num_nodes)
    if not (slurm_launched() or under_torchrun()):
        if num_nodes > 1:
            raise TrendgenError(
                f"trend.num_nodes={num_nodes} needs one process per device on each node: start "
                f"trendgen-design with `srun --nodes={num_nodes} --ntasks-per-node={devices}` (or torchrun)"
            )
        return None
    from trendgen.design.embed_distributed import EmbedGroup, launched_environment

    env = launched_environment()
    if env.world_size() == 1 and devices == 1 and num_nodes == 1:
        return None
    return EmbedGroup(env, devices, num_nodes)


def run_design(cfg: Any) -> dict[str, Any]:
    """Run `design.stages`; write trend.json, prompt.txt, designs/ and report.html in paths.output_dir.

    Started as several ranks (srun, torchrun), every rank embeds its share of the images; rank 0 alone runs
    the rest of the pipeline and writes the outputs, the other ranks return {} once their share is done.
    """
    group = join_embed_group(cfg.trend)
    if group is None:
        trend = DesignRun(cfg).run()
    else:
        try:
            if not group.is_leader:
                group.serve(lambda: load_design_clip(cfg.model))
                return {}
            trend = DesignRun(cfg, group).run()
        finally:
            group.close()
    out = Path(trend["output_dir"])
    print(f"trend: {out / TREND_JSON}")
    if "prompt" in trend:
        print(f"prompt ({trend['prompt']['source']}): {trend['prompt']['text']}")
    if "report" in trend:
        print(f"report: {trend['report']}")
    return trend
