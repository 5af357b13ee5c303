"""A supervisor's restart decisions, apart from acting on them.

Which children a failure takes down (the strategy), whether one more restart
is allowed (the intensity within the period), and how long a child whose
start failed waits before the next attempt (its backoff): pure decisions on
plain values, so the supervisor's methods only act on them.
"""

from __future__ import annotations

import collections
import random
from typing import TYPE_CHECKING, TypeVar

from ._policy import Backoff, Strategy

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["RestartIntensity", "affected", "backoff_delay"]

_T = TypeVar("_T")


class RestartIntensity:
    """OTP's restart intensity: at most ``intensity`` restarts within any
    ``period`` seconds."""

    def __init__(self, intensity: int, period: float) -> None:
        self.intensity = intensity
        self.period = period
        self._times: collections.deque[float] = collections.deque()

    def allow(self, now: float) -> bool:
        """Count a restart at ``now``; False if that exceeds the intensity."""
        self._times.append(now)
        while self._times and self._times[0] < now - self.period:
            self._times.popleft()
        return len(self._times) <= self.intensity


def affected(strategy: Strategy, children: Sequence[_T], failed: _T) -> list[_T]:
    """The children (in start order) that the failure of ``failed`` restarts:
    just it, all of them, or it and those started after it."""
    if strategy is Strategy.ONE_FOR_ONE:
        return [failed]
    if strategy is Strategy.ONE_FOR_ALL:
        return list(children)
    return list(children[children.index(failed) :])


def backoff_delay(backoff: Backoff | None, failed_starts: int) -> float:
    """Seconds before the next start of a child after ``failed_starts``
    consecutive failed starts (none without a backoff)."""
    return backoff.delay(failed_starts, random.random()) if backoff else 0.0
