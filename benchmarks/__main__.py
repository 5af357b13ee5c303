"""``python -m benchmarks [core|tensors|sandbox|supervision|flood ...]``: run the benchmarks.

Each benchmark prints its own table of ratios against baselines measured in
the same run. With no names, all of them run (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = {
    "core": "benchmarks.bench_core",
    "tensors": "benchmarks.bench_tensors",
    "sandbox": "benchmarks.bench_sandbox",
    "supervision": "benchmarks.bench_supervision",
    "flood": "benchmarks.bench_flood",
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument(
        "names",
        nargs="*",
        choices=[*BENCHMARKS, []],
        metavar="NAME",
        help=f"which to run: {', '.join(BENCHMARKS)} (default: all)",
    )
    args, rest = parser.parse_known_args()
    for name in args.names or list(BENCHMARKS):
        print(f"\n=== {name} ===", flush=True)
        module = importlib.import_module(BENCHMARKS[name])
        module.main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
