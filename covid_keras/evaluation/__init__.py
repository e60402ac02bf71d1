"""Statistics that judge models, in plain numpy (no TensorFlow), JSON-able results.

- `metrics`: classifier metrics from labels and P(COVID) (accuracy, AUC, sensitivity, ...).
- `intervals`: 95 % intervals that combine test-image sampling with seed-to-seed variance, and
  the paired per-seed difference that decides whether one arm beats another.
- `memorisation`: nearest-training-image distances of generated images against those of real
  held-out images; flags a generator that returns (near) copies of its training images.

The classifier metrics are also importable from the package itself (`evaluation.roc_auc`).
"""

from covid_keras.evaluation.metrics import (  # noqa: F401
    DEFAULT_THRESHOLD,
    classification_metrics,
    confusion_counts,
    roc_auc,
    roc_curve,
)
