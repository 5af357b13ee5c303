"""Actors that flood or forge their output (tests/security/test_output_flood.py).

They write to their file descriptors 1 and 2 directly, as a hostile (or just
noisy) plugin would, bypassing Python's buffering.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import pyisolate
from pyisolate.actors._output import LOG_PREFIX


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fd(stream: str) -> int:
    return 1 if stream == "stdout" else 2


class Noisy(pyisolate.Actor):
    """Writes what it is told to, as much as it is told to."""

    def ping(self) -> str:
        return "pong"

    def flood_lines(self, seconds: float, stream: str = "stderr") -> int:
        """Numbered lines, 100 per write, for ``seconds``; returns how many."""
        fd, count = _fd(stream), 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            _write(fd, b"".join(b"flood %d\n" % (count + i) for i in range(100)))
            count += 100
        return count

    def write_lines(self, count: int, stream: str = "stderr") -> int:
        _write(_fd(stream), b"".join(b"line %d\n" % i for i in range(count)))
        return count

    def no_newline(self, nbytes: int, stream: str = "stderr") -> int:
        """``nbytes`` of "x" without a line end, 1 MiB per write, then one "\\n"."""
        block = b"x" * (1 << 20)
        left = nbytes
        while left > 0:
            _write(_fd(stream), block[: min(left, len(block))])
            left -= len(block)
        _write(_fd(stream), b"\n")
        return nbytes

    def progress(self, total: int) -> None:
        """A progress bar as tqdm draws one: "\\r" before each state, one "\\n" at the end."""
        for i in range(1, total + 1):
            _write(2, f"\r{i}/{total} |{'#' * (i * 20 // total):<20}|".encode())
        _write(2, b"\n")

    def forge(self, bodies: list[str]) -> None:
        """Lines that look like forwarded log records: LOG_PREFIX + ``body``."""
        _write(2, b"".join(f"{LOG_PREFIX}{body}\n".encode() for body in bodies))

    def talk(self, text: str) -> None:
        """What a well-behaved plugin writes: a print and two log records."""
        print(f"stdout says {text}", flush=True)
        logging.getLogger("plugin.inner").warning("warning says %s", text)
        logging.getLogger("plugin.inner").error("error says %s", text)

    def log_long(self, nchars: int) -> None:
        logging.getLogger("plugin.long").warning("BEGIN%sEND", "A" * nchars)


class DiesLoudly(pyisolate.Actor):
    """Writes ``lines`` lines and last words to stderr in its constructor, then exits."""

    def __init__(self, lines: int) -> None:
        _write(2, b"".join(b"noise %d\n" % i for i in range(lines)))
        sys.stderr.write("fatal: the last words\n")
        sys.stderr.flush()
        os._exit(3)
