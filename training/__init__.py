"""Training-side code: pretraining, fine-tuning, data sets and phantoms (imports dira_zoo, never apps)."""
