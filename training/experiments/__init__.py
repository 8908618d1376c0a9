"""End-to-end experiments on chest phantoms, where the ground truth (labels and boxes) is known.

- :mod:`.pipeline`: the shared steps (phantoms → DiRA pretraining → fine-tuning → AUC and localization).
- :mod:`.default_model`: the recipe of the embedded default model
  (``python -m training.experiments.default_model``).
- :mod:`.phantom_ablation`: di / dir / dira / random init × label fractions × seeds
  (``python -m training.experiments.phantom_ablation --config small``).
"""
