"""``python -m pyisolate {demo,doctor}``; ``--version``; bare, it prints help."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pyisolate", description="pyisolate: an actor runtime for Python"
    )
    parser.add_argument("--version", action="version", version=f"pyisolate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{demo,doctor}")
    sub.add_parser("demo", help="spawn actors, call, stream, crash one; print a summary")
    sub.add_parser("doctor", help="show what this machine offers: sandbox, shm, CUDA IPC")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        # A newcomer's first try: show what there is rather than an argparse error.
        parser.print_help()
        return 0
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo()
    from ._doctor import run_doctor

    return run_doctor()


if __name__ == "__main__":
    sys.exit(main())
