#!/usr/bin/env bash
# GPU check of issue 7 (not used by CI): the study's run-3 GAN step (150 px, batch 8, K = 10) in
# float32 and mixed_float16, each with and without XLA jit_compile, plus the epoch time this gives
# for the study's 4,340-image train split (results.*.epoch_estimate_s). Prints one JSON object.
# Runs in under 10 minutes on one GPU; needs a Python with TensorFlow (GPU build) and this project
# installed (`pip install -e .`); torch is not needed.
#
#   bench/gpu_check.sh                 # PYTHON=... to choose the interpreter; ROUNDS=... cycles per variant
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
ROUNDS=${ROUNDS:-20}  # a GPU step takes milliseconds: more K-step cycles for a stable median

"$PYTHON" - <<'PY'
import sys
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
print(f"TensorFlow {tf.__version__}, GPUs: {[g.name for g in gpus]}", file=sys.stderr)
sys.exit(0 if gpus else "no GPU visible to TensorFlow: this check is for a GPU machine")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >&2 || true

# mixed_float16 is built as train_gan builds it (covid_keras.runtime): float32 images and logits,
# LossScaleOptimizer. The fastest of the four should be covid_keras.runtime.DEFAULTS["GPU"].
exec timeout 540 "$PYTHON" -m bench.gan_vs_torch --no-torch --precisions float32,mixed_float16 --xla --rounds "$ROUNDS"
