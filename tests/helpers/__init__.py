"""Test helpers: tiny models built locally, trending folders, local services (SLURM, an OpenAI server)."""
