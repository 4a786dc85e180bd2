"""Experiment tracking: W&B runs for every app (`wandb_runs`), run identity (`runs`), secrets kept out of
every record (`secrets_env`), trend.json read back (`trend_record`) and sweep tables (`compare`)."""
