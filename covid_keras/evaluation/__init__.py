"""Judging models: statistics in plain numpy (no TensorFlow, JSON-able results), and a GAN's evaluation.

- `metrics`: classifier metrics from labels and P(COVID) (accuracy, AUC, sensitivity, ...).
- `intervals`: 95 % intervals that combine test-image sampling with seed-to-seed variance, and
  the paired per-seed difference that decides whether one arm beats another.
- `calibration`: temperature scaling, reliability bins and the expected calibration error of P(COVID).
- `operating_point`: the threshold for a target sensitivity, rates with Wilson 95 % intervals.
- `shortcuts`: where Grad-CAM maps put their mass (image border, top corners), per class.
- `memorisation`: nearest-training-image distances of generated images against those of real
  held-out images; flags a generator that returns (near) copies of its training images.

The classifier metrics are also importable from the package itself (`evaluation.roc_auc`).

A GAN's evaluation (these need TensorFlow, so the package does not import them): `images`,
`embeddings` (KID's feature extractors), `kid` (KID and diversity), `judge` (the small-CNN judge
and class fidelity), `diagnostics` (DiffAugment, blur, checkerboard), `tstr` (TSTR vs TRTR),
`checkpoints` (a run's kept generators), `gan_report` (`evaluate_gan`, its files and summary),
`imagenet_judge` (the independent judge: frozen ImageNet features and a trained head), `evidence`
(the evidence protocol on one held-out split). JSON only: `gan_report_schema` (an `evaluate_gan`
report's figures, typed), `comparison` (those reports side by side), `evidence_pooling` (evidence
reports pooled over GAN training seeds).
"""

from covid_keras.evaluation.metrics import (  # noqa: F401
    DEFAULT_THRESHOLD,
    classification_metrics,
    confusion_counts,
    paired_differences,
    roc_auc,
    roc_auc_interval,
    roc_curve,
)
