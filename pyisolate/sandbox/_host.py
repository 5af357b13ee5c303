"""What this machine has: physical memory and how many tasks it can run.

The default resource ceilings are fractions of these (see ``_policy``). Read
once per process: they do not change under a running program, and policies
are built on every spawn.
"""

from __future__ import annotations

import functools
import os

__all__ = ["physical_memory", "task_ceiling"]

# Used where /proc is missing (not Linux): generous enough never to bite.
_FALLBACK_MEMORY = 16 << 30
_FALLBACK_TASKS = 32768


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@functools.lru_cache(maxsize=1)
def physical_memory() -> int:
    """Bytes of RAM (MemTotal), not counting swap."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return _FALLBACK_MEMORY


@functools.lru_cache(maxsize=1)
def task_ceiling() -> int:
    """How many tasks (processes and threads) the kernel can hold at once:
    the smaller of ``kernel.pid_max`` and ``kernel.threads-max``."""
    values = [
        v
        for v in (
            _read_int("/proc/sys/kernel/pid_max"),
            _read_int("/proc/sys/kernel/threads-max"),
        )
        if v
    ]
    return min(values) if values else _FALLBACK_TASKS
