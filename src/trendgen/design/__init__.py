"""The design pipeline's stages (embed, cluster, describe, prompt, generate, report), listed in `stages`, with
the stage store (`store`), what a run checks and identifies first (`inputs`) and the caption bank."""
