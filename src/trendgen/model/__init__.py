"""CLIP for trendgen: building and loading (`build`), freezing (`freeze`), the global contrastive loss
(`loss`), retrieval and zero-shot metrics (`metrics`) and the Lightning module (`module`)."""
