"""Why the Keras-vs-PyTorch float32 equality check depends on the CPU, and what makes it not.

`bench/gan_vs_torch.py` starts both frameworks from the same weights, batch and noise, and
compares their losses over a few Adam steps. The first loss agrees to ~1e-7 everywhere, but the
losses after updates passed on an AVX2 EPYC (1.45e-3 against a 2e-3 tolerance) and failed on an
AMX Xeon (5.0e-3). The hypothesis: Adam's first updates are ~lr * m / (sqrt(v) + eps), about
lr * sign(g) for any gradient much larger than eps, so a weight whose gradient is rounding noise
(|g| ~1e-6, eps 1e-8) takes a full +-lr step whose sign the rounding decides; a different CPU
kernel (AVX2, AVX-512, AMX, a different blocking or thread split) rounds differently, and those
steps then differ between the frameworks by 2 lr. With eps well above the noise (1e-4, still far
below the median |g| ~2e-2) such weights barely move and the frameworks should agree closely
whatever the kernels.

This runs the check (float32, 5 steps, run 3 at 150 px, batch 8) in fresh processes under
different oneDNN kernels (`ONEDNN_MAX_CPU_ISA`, and TensorFlow's oneDNN ops off) with the
training epsilon 1e-8 and with 1e-4, and prints one JSON object:

    python experiments/adam_rounding.py > adam_rounding.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

KERNELS = {
    "default": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "tf_onednn_off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
}
EPSILONS = (1e-8, 1e-4)
STEPS = 5

_CHILD = """
import json, sys, types
from bench import gan_vs_torch as bench
bench.import_torch()
args = types.SimpleNamespace(image_size=150, batch_size=8, d_every=10, seed=0)
print(json.dumps(bench.equality_check(args, "float32", steps={steps}, epsilon={epsilon})))
"""


def check(kernel_env: dict, epsilon: float) -> dict:
    env = {**os.environ, **kernel_env, "TF_CPP_MIN_LOG_LEVEL": "2"}
    code = _CHILD.format(steps=STEPS, epsilon=epsilon)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with open("/proc/cpuinfo") as f:
        info = f.read()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    start, load = time.perf_counter(), os.getloadavg()
    results = {f"{name}, eps {epsilon:g}": check(env, epsilon) for name, env in KERNELS.items() for epsilon in EPSILONS}
    print(json.dumps({
        "experiment": "adam_rounding",
        "cpu": model,
        "cpu_flags": [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags],
        "load_average_start": [round(x, 2) for x in load],
        "results": results,
        "seconds": round(time.perf_counter() - start, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
