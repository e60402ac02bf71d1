"""TF_CONFIG read without TensorFlow: how many processes a cluster names.

`distribute` builds the strategy from it; `cli.run` refuses, in one line, to start a command
that is not built for several workers when TF_CONFIG names several (each worker would run the
whole command into the same outputs).
"""

from __future__ import annotations

import json
import os
from typing import Mapping

TF_CONFIG = "TF_CONFIG"


def cluster_workers(environ: Mapping[str, str] | None = None) -> int:
    """How many processes TF_CONFIG's cluster names (chief and workers); 0 without TF_CONFIG."""
    text = (os.environ if environ is None else environ).get(TF_CONFIG, "")
    if not text.strip():
        return 0
    try:
        cluster = json.loads(text).get("cluster", {})
    except (ValueError, AttributeError) as e:
        raise ValueError(f"{TF_CONFIG} is not a JSON object with a 'cluster': {e}") from e
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))
