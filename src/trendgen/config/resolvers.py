"""The config tree's own resolvers: `${trendgen.point_dirname:...}`, `${trendgen.run_stamp:...}` (run dir
names, conf/hydra/default.yaml) and `${trendgen.conf:...}` (files shipped with the tree, such as the bank)."""

from __future__ import annotations

import hashlib
import os

from omegaconf import OmegaConf

from trendgen.config.location import conf_path

MAX_POINT_DIRNAME = 200  # file systems refuse names past 255 bytes; sweeps with many overrides get there


def point_dirname(override_dirname: str, max_len: int = MAX_POINT_DIRNAME) -> str:
    """A sweep point's dir name from its overrides (`lr=...` style), safe as one path component.

    `/` in a value becomes `_` (one dir per point). A name past `max_len` keeps only the last part of each key
    (`model.optimizer.lr=0.001` -> `lr=0.001`); if still too long it is cut and ends with a hash of the whole
    name, so points stay distinct. The full overrides are always in the point's `.hydra/overrides.yaml`.
    """
    name = override_dirname.replace("/", "_") or "default"
    if len(name) <= max_len:
        return name
    short = ",".join(
        f"{key.rsplit('.', 1)[-1]}={value}" if sep else key
        for key, sep, value in (item.partition("=") for item in name.split(","))
    )
    if len(short) <= max_len:
        return short
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    return f"{short[: max_len - len(digest) - 1]}-{digest}"


def run_stamp(timestamp: str) -> str:
    """The last part of a single run's dir: the same for every rank of one job and across requeues.

    Under SLURM it is the job (`slurm-<job id>`, `slurm-<array job>_<task>`, plus `-step<k>` for a later srun
    step of the same job), so all srun tasks share one dir and a requeued job finds its checkpoints again.
    Under torchrun with a rendezvous id it is that id; elsewhere the timestamp it is given.
    """
    env = os.environ
    if env.get("SLURM_JOB_ID") and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        array_job, array_task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
        job = f"{array_job}_{array_task}" if array_job and array_task else env["SLURM_JOB_ID"]
        step = env.get("SLURM_STEP_ID", "")
        later_step = step.isdigit() and 0 < int(step) < 0xFFFFFFF0  # larger values are SLURM's special steps
        return f"slurm-{job}" + (f"-step{step}" if later_step else "")
    rendezvous = env.get("TORCHELASTIC_RUN_ID", "")
    if rendezvous and rendezvous != "none":
        return f"torchrun-{rendezvous}"
    return timestamp


def register_resolvers() -> None:
    """Register the resolvers the config tree uses (once per process)."""
    if not OmegaConf.has_resolver("trendgen.point_dirname"):
        OmegaConf.register_new_resolver("trendgen.point_dirname", point_dirname)
    if not OmegaConf.has_resolver("trendgen.run_stamp"):
        OmegaConf.register_new_resolver("trendgen.run_stamp", run_stamp)
    if not OmegaConf.has_resolver("trendgen.conf"):
        OmegaConf.register_new_resolver("trendgen.conf", conf_path)
