"""The design pipeline: trending photos -> trend -> captions -> prompt -> designs -> report.

`design.stages` names the stages to run (always in the order of `STAGES`). Each stage's artifacts live in
`<output_dir>/<stage>/` with a manifest holding the stage's key (see `trendgen.stage_cache`); a stage whose
key matches is reused, so a rerun with another llm or generator does not embed again. A stage left out of
`design.stages` but needed by a later one must have fresh artifacts. The run ends with `trend.json` (the one
machine-readable record), `prompt.txt`, `designs/` and `report.html` in the output dir.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from trendgen.caption_bank import flatten, load_bank, resolve_bank_path
from trendgen.errors import TrendgenError, first_line
from trendgen.image_files import input_files, trend_files
from trendgen.slurm import check_slurm_layout, slurm_launched, under_torchrun
from trendgen.stage_cache import StageDir, content_hash, files_identity, folder_identity, stable_hash

# The stage modules (torch, transformers, diffusers, sklearn, openai) load only when a stage runs, so a wrong
# path or setting is reported at once.

log = logging.getLogger(__name__)

STAGES = ["embed", "cluster", "describe", "prompt", "generate", "report"]
TREND_JSON = "trend.json"
PROMPT_TXT = "prompt.txt"
REPORT_HTML = "report.html"
API_KEY_ENV = "OPENAI_API_KEY"
CLIP_TOKEN_LIMIT = 77


def requested_stages(cfg: Any) -> list[str]:
    names = [str(s) for s in cfg.design.stages]
    unknown = [s for s in names if s not in STAGES]
    if unknown:
        raise TrendgenError(f"design.stages: unknown stage(s) {unknown}; choose from {STAGES}")
    if not names:
        raise TrendgenError("design.stages is empty")
    return [s for s in STAGES if s in names]


def prepare_synthetic_trend(cfg: Any) -> None:
    """Draw the synthetic trend (and baseline) set when `trend.synthetic` is set and a folder is missing."""
    syn = cfg.trend.synthetic
    if syn is None:
        return
    from trendgen.data.synthetic import write_trend_folder

    planted = dict(syn.planted) or None
    wanted = [(cfg.trend.images, syn.n, syn.planted_share, syn.seed)]
    if cfg.trend.baseline_images and syn.baseline_n > 0:
        wanted.append((cfg.trend.baseline_images, syn.baseline_n, syn.baseline_planted_share, syn.seed + 1))
    for folder, n, share, seed in wanted:
        if folder and not Path(str(folder)).exists():
            log.info("drawing %d synthetic looks (%.0f%% planted) into %s", n, 100 * share, folder)
            write_trend_folder(
                Path(str(folder)), n=n, planted=planted, planted_share=share, seed=seed, px=syn.px
            )


def model_identity(model_cfg: Any) -> list[Any]:
    """The model's identity for the stage keys; a missing model folder is a user error, said at once."""
    name = str(model_cfg.name_or_path)
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")) or not model_cfg.pretrained:
        if not path.is_dir():
            raise TrendgenError(
                f"model.name_or_path: model folder not found: {path} "
                "(point it at the model/ folder a trendgen-train run saved)"
            )
        if not (path / "config.json").is_file():
            raise TrendgenError(f"model.name_or_path: {path} is not a saved model folder (no config.json)")
        try:
            json.loads((path / "config.json").read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise TrendgenError(f"model.name_or_path: unreadable {path / 'config.json'}: {err}") from None
    return folder_identity(path if path.exists() else name)


def check_cluster_count(trend: Any) -> None:
    """k larger than the number of image files can never work: say so before any image is decoded."""
    setting = str(trend.clusters).strip().lower()
    if setting == "auto" or not setting.lstrip("-").isdigit():
        return
    current, baseline = trend_files(trend)
    if int(setting) > len(current) + len(baseline):
        raise TrendgenError(
            f"trend.clusters={setting} is more than the {len(current) + len(baseline)} images given: lower k"
        )


def load_design_clip(model_cfg: Any) -> Any:
    """(CLIPModel, tokenizer, image processor): a saved folder, or a pretrained hub id."""
    from trendgen.model.build import load_clip, load_saved

    name = str(model_cfg.name_or_path)
    path = Path(name).expanduser()
    try:
        return load_saved(path) if path.exists() or not model_cfg.pretrained else load_clip(model_cfg)
    except TrendgenError:
        raise
    except Exception as err:  # corrupt weights raise the loader's own errors (e.g. SafetensorError)
        raise TrendgenError(
            f"model.name_or_path: could not load a CLIP model from {name}: {first_line(err)}"
        ) from err


def config_hash(cfg: Any) -> str:
    """A hash of the resolved config, paths and hydra settings left out."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in ("paths", "hydra"):
        plain.pop(key, None)
    return stable_hash(plain)


def _subset(node: Any, keys: list[str]) -> dict[str, Any]:
    return {k: OmegaConf.to_container(node, resolve=True).get(k) for k in keys}


def stage_keys(cfg: Any, model_id: Any) -> dict[str, str]:
    """Every stage's key: its config subtree, its input files and the key of the stage before it."""
    trend = cfg.trend
    bank_id = content_hash(resolve_bank_path(cfg.captions.bank))
    keys: dict[str, str] = {}
    keys["embed"] = stable_hash(
        "embed", model_id, str(trend.images), str(trend.baseline_images), files_identity(input_files(trend))
    )
    cluster_cfg = _subset(
        trend, ["clusters", "auto_range", "seed", "n_init", "target", "exemplars", "minibatch_threshold"]
    )
    keys["cluster"] = stable_hash("cluster", keys["embed"], cluster_cfg)
    keys["describe"] = stable_hash(
        "describe", keys["cluster"], bank_id, _subset(cfg.captions, ["top_k", "per_facet", "look_template"])
    )
    llm = OmegaConf.to_container(cfg.llm, resolve=True)
    key_present = bool(os.environ.get(API_KEY_ENV)) if cfg.llm.name == "openai" else None
    gen = cfg.generator
    trained = folder_identity(Path(str(gen.name_or_path)).expanduser()) if gen.name == "trained" else None
    gen_tokenizer = [gen.name, gen.name_or_path, trained, bank_id]
    keys["prompt"] = stable_hash("prompt", keys["describe"], llm, key_present, gen_tokenizer)
    keys["generate"] = stable_hash(
        "generate", keys["prompt"], OmegaConf.to_container(gen, resolve=True), trained
    )
    keys["report"] = stable_hash("report", keys["generate"])
    return keys


class DesignRun:
    """One run of the pipeline: stage folders, lazily loaded models, and what each stage produced."""

    def __init__(self, cfg: Any, group: Any = None) -> None:
        self.cfg = cfg
        self.group = group  # the EmbedGroup when srun or torchrun started several ranks; this is rank 0
        self.out = Path(str(cfg.paths.output_dir))
        self.store = Path(str(cfg.design.store)).expanduser() if cfg.design.store else None
        self.requested = requested_stages(cfg)
        self.seconds: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self.results: dict[str, Any] = {}
        self._clip: Any = None
        self._generator_source: str | None = None
        prepare_synthetic_trend(cfg)
        self.model_id = model_identity(cfg.model)
        check_cluster_count(cfg.trend)
        if cfg.generator.name == "trained":
            self.generator_source()  # a folder that is not a trendgen generator is refused before any work
        self.keys = stage_keys(cfg, self.model_id)
        self.config_hash = config_hash(cfg)

    @property
    def clip(self) -> Any:
        if self._clip is None:
            self._clip = load_design_clip(self.cfg.model)
        return self._clip

    def generator_source(self) -> str | None:
        if self.cfg.generator.name == "none":
            return None
        if self._generator_source is None:
            from trendgen import generate

            # only the tiny random pipeline learns its tokenizer from the bank
            texts = flatten(load_bank(self.cfg.captions.bank))[0] if self.cfg.generator.name == "tiny" else []
            self._generator_source = generate.pipeline_source(
                self.cfg.generator, self.cfg.paths.cache_dir, texts
            )
        return self._generator_source

    def run(self) -> dict[str, Any]:
        last = STAGES.index(self.requested[-1])
        for name in STAGES[: last + 1]:
            if name == "report":
                continue
            start = time.perf_counter()
            stage = StageDir(name, self.out / name, self.keys[name], self.store)
            if name in self.requested and not (self.cfg.design.reuse and stage.is_fresh()):
                stage.prepare()
                files, info = self._run_stage(name, stage)
                stage.commit(files, info)
                self.status[name] = "ran"
            elif stage.is_fresh():
                self.status[name] = "reused"
            else:
                raise TrendgenError(
                    f"design.stages: {self.requested[-1]} needs the results of the {name} stage, which has "
                    f"not run with this config: add {name} to design.stages"
                )
            if name == "embed" and self.group is not None:
                self.group.close()  # the other ranks are done (or were never needed); the rest runs here
            self.results[name] = self._load_stage(name, stage.path)
            self.seconds[name] = round(time.perf_counter() - start, 3)
        trend = self.trend_record()
        self.write_outputs(trend)
        return trend

    def _run_stage(self, name: str, stage: StageDir) -> tuple[list[str], dict[str, Any]]:
        from trendgen import cluster, describe, embed, generate, prompt

        cfg, r = self.cfg, self.results
        log.info("stage %s: running", name)
        if name == "embed":
            return embed.run(cfg, self.clip, stage.path, self.group), {}
        if name == "cluster":
            embeddings, index = r["embed"]
            return cluster.run(cfg, embeddings, index, stage.path), {}
        if name == "describe":
            record, centroids, _ = r["cluster"]
            centroid = centroids[record["target_cluster"]]
            return describe.run(cfg, self.clip, self.model_id, centroid, stage.path)
        if name == "prompt":
            captions, _ = r["describe"]
            source = self.generator_source()
            if source is None:
                tokenizer, limit = self.clip[1], CLIP_TOKEN_LIMIT
            else:
                tokenizer, limit = generate.generator_tokenizer(source)
            files = prompt.run(
                cfg, captions, tokenizer, stage.path, limit, generate.generator_vocabulary(source)
            )
            return files, {"reusable": prompt.load(stage.path)["fallback_reason"] is None}
        if name == "generate":
            record, centroids, _ = r["cluster"]
            _, top_text = r["describe"]
            files = generate.run(
                cfg,
                self.clip,
                self.generator_source(),
                r["prompt"],
                centroids[record["target_cluster"]],
                top_text,
                self.config_hash,
                self.keys["generate"],
                stage.path,
            )
            return files, {}
        raise AssertionError(name)

    def _load_stage(self, name: str, path: Path) -> Any:
        from trendgen import cluster, describe, embed, generate, prompt

        return {
            "embed": embed.load,
            "cluster": cluster.load,
            "describe": describe.load,
            "prompt": prompt.load,
            "generate": generate.load,
        }[name](path)

    def trend_record(self) -> dict[str, Any]:
        """trend.json: images, clusters, dominant/target, captions, prompt, designs, hash, stage times."""
        r = self.results
        trend: dict[str, Any] = {"config_hash": self.config_hash, "output_dir": str(self.out)}
        if "embed" in r:
            _, index = r["embed"]
            skipped = [{"path": s["path"], "reason": s["reason"]} for s in index["skipped"]]
            total = sum(index["totals"].values())
            trend["images"] = {"total": total, "used": len(index["paths"]), "skipped": skipped}
            if index["totals"]["baseline"]:
                used_then = sum(1 for s in index["sets"] if s == "baseline")
                trend["images"]["baseline"] = {"total": index["totals"]["baseline"], "used": used_then}
        if "cluster" in r:
            record, _, _ = r["cluster"]
            trend.update(
                clusters=record["clusters"],
                dominant_cluster=record["dominant_cluster"],
                target_cluster=record["target_cluster"],
                k=record["k"],
                k_chosen_by=record["k_chosen_by"],
            )
        if "describe" in r:
            captions, _ = r["describe"]

            def public(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return [{k: e[k] for k in ("text", "facet", "score")} for e in rows]

            trend.update(
                look=captions["look"],
                captions=public(captions["overall"]),
                facets={f: public(rows) for f, rows in captions["facets"].items()},
            )
        if "prompt" in r:
            p = r["prompt"]
            trend["prompt"] = {
                "text": p["text"],
                "generator_text": p.get("generator_text", p["text"]),
                "source": p["source"],
                "fallback_reason": p["fallback_reason"],
            }
        if "generate" in r:
            trend["designs"] = [
                {"path": str(self._publish_design(Path(d["path"]))), "seed": d["seed"], "score": d["score"]}
                for d in r["generate"]["designs"]
            ]
        trend["stage_seconds"] = self.seconds
        trend["stage_status"] = self.status
        return trend

    def _publish_design(self, src: Path) -> Path:
        """Link a design into `<output_dir>/designs/` (an existing different file is never replaced)."""
        folder = self.out / "designs"
        folder.mkdir(parents=True, exist_ok=True)
        dst = folder / src.name
        if dst.exists() and dst.samefile(src):
            return dst
        if dst.exists():
            from trendgen.generate import unique_path

            dst = unique_path(folder, src.stem)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        return dst

    def write_outputs(self, trend: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        if "prompt" in trend:
            (self.out / PROMPT_TXT).write_text(trend["prompt"]["text"] + "\n")
        if "report" in self.requested:
            from trendgen import report

            start = time.perf_counter()
            embeddings, index = self.results["embed"]
            _, _, labels = self.results["cluster"]
            report.run(trend, embeddings, labels, index["sets"], self.out)
            self.seconds["report"] = round(time.perf_counter() - start, 3)
            self.status["report"] = "ran"
            trend["report"] = str(self.out / REPORT_HTML)
        (self.out / TREND_JSON).write_text(json.dumps(trend, indent=1))


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
    from trendgen.embed_distributed import EmbedGroup, launched_environment

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
