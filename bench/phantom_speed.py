"""Benchmark: how fast the built-in phantom dataset generates (single process).

Prints one JSON object, e.g.
{"images": 2000, "seconds": 16.1, "images_per_s": 124.2, "cpu_seconds": 16.0, "size": 299}.
"""

import argparse
import json
import time

from covid_keras import phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000, help="total images, half per class (default 2000)")
    parser.add_argument("--size", type=int, default=299, help="image side in pixels (default 299)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    args = parser.parse_args()

    per_class = args.images // 2
    start, cpu_start = time.perf_counter(), time.process_time()
    count = sum(1 for _ in phantom.iter_phantoms(per_class, seed=args.seed, size=args.size))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    result = {
        "images": count,
        "seconds": round(seconds, 2),
        "images_per_s": round(count / seconds, 1),
        "cpu_seconds": round(cpu_seconds, 2),  # wall time minus waiting for a busy CPU
        "size": args.size,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
