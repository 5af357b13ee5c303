"""``python -m pyisolate {demo,doctor}``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pyisolate", description="pyisolate: an actor runtime for Python"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="spawn actors, call, stream, crash one; print a summary")
    sub.add_parser("doctor", help="show what this machine offers: sandbox, shm, CUDA IPC")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo()
    from ._doctor import run_doctor

    return run_doctor()


if __name__ == "__main__":
    sys.exit(main())
