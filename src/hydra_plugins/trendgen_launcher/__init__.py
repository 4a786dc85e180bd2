"""trendgen's Hydra launcher: submitit's SLURM launcher, saving the current training step on requeue.

submitit calls the job's `checkpoint()` on its global rank 0 when SLURM signals a time-out or preemption
(SIGUSR2), then requeues the job and exits. This launcher's `checkpoint()` first writes
`checkpoints/last-requeue.ckpt` (see `trendgen.training.fit.save_requeue_checkpoint`); the requeued job
resumes from the newest `last*.ckpt` of its run dir, that one, and exports nothing from the interrupted
attempt.
"""

from __future__ import annotations

from typing import Any

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher


class SlurmLauncher(SubmititSlurmLauncher):
    """`hydra/launcher=slurm`: submitit's SLURM launcher whose requeue saves the current training step."""

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from trendgen.training.fit import save_requeue_checkpoint

        save_requeue_checkpoint()
        return super().checkpoint(*args, **kwargs)
