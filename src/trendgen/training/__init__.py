"""Training with Lightning, shared by CLIP and generator training: the Trainer, its loggers and callbacks, the
export that happens however a run stops (`fit`), and launch layouts under SLURM and torchrun (`launch`)."""
