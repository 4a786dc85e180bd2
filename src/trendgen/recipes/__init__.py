"""Recipes: what each app does, setup -> run -> cleanup, on the library packages below them: `train` (CLIP),
`train_generator`, `evaluate` and `evaluate_generator`, `design` (the design pipeline)."""
