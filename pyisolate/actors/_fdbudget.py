"""The host's file descriptors: enough for its actors, and never all of them.

Each actor costs the host about :data:`PER_ACTOR` descriptors (its side
channel, three pipes, a pidfd, ZeroMQ's end of its connection, a template's
extras). At the limit, ``socketpair()`` fails cleanly but ZeroMQ's I/O thread
does not: it aborts the whole process ("Too many open files"). So the runtime
raises its soft RLIMIT_NOFILE to the hard limit once, and refuses a spawn that
would leave fewer than :data:`MARGIN` descriptors free, counting the spawns
still in flight, with an ActorStartError that says how to get more.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from ..errors import ActorStartError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["MARGIN", "PER_ACTOR", "FdBudget"]

PER_ACTOR = 8
MARGIN = 64
# Where the hard limit is unlimited, ask for this much (the kernel's nr_open
# default) rather than RLIM_INFINITY, which setrlimit refuses for NOFILE.
_CEILING = 1 << 20


def _limits() -> tuple[int, int] | None:
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard


def _open_fds() -> int | None:
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(directory)) - 1  # the listing's own descriptor
        except OSError:
            continue
    return None


class FdBudget:
    """Spawn admission by file descriptors; one per Runtime."""

    def __init__(self) -> None:
        self._in_flight = 0

    @staticmethod
    def raise_soft_limit() -> None:
        """Soft RLIMIT_NOFILE up to the hard limit (a no-op where it is already)."""
        limits = _limits()
        if limits is None:
            return
        import resource

        soft, hard = limits
        target = hard if hard != resource.RLIM_INFINITY else _CEILING
        if soft != resource.RLIM_INFINITY and soft < target:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))

    @contextlib.contextmanager
    def reserve(self, name: str) -> Iterator[None]:
        """Hold :data:`PER_ACTOR` descriptors for one spawn while it starts;
        ActorStartError if that would leave fewer than :data:`MARGIN` free."""
        limits = _limits()
        open_now = _open_fds()
        if limits is not None and open_now is not None:
            soft, hard = limits
            needed = open_now + (self._in_flight + 1) * PER_ACTOR + MARGIN
            if needed > soft:
                raise ActorStartError(
                    f"cannot start actor {name!r}: {open_now} of this process's {soft} file "
                    f"descriptors are open, {self._in_flight} other spawns are starting, and "
                    f"each actor needs about {PER_ACTOR}. Raise the limit (ulimit -n; the hard "
                    f"limit is {hard}) or run fewer actors at once",
                    actor=name,
                )
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
