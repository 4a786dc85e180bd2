"""CLIP for trendgen: building and loading (`build`), its tokenizer learnt from captions (`tokenizer`),
freezing (`freeze`), LoRA (`lora`), the global contrastive loss (`loss`), retrieval and zero-shot metrics
(`metrics`), optimiser groups (`optim`), the Lightning module (`module`) and WiSE-FT (`wise_ft`)."""
