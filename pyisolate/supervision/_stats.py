"""What a running supervisor reports: counters, and its children's status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from ._policy import Restart

__all__ = ["ChildCounts", "ChildInfo", "SupervisorStats"]


@attrs.define
class SupervisorStats:
    """Counters of one supervisor since it started (read ``handle.stats``)."""

    restarts: int = 0  # restarts (one per failure handled, one per retry), as intensity counts
    failures: int = 0  # abnormal exits of children
    normal_exits: int = 0
    start_failures: int = 0  # failed (re)starts of children
    hangs: int = 0  # children killed for missing heartbeats
    escalations: int = 0  # nested supervisors that gave up
    give_ups: int = 0  # 1 once this supervisor exceeded its intensity
    last_failure: BaseException | None = None


@attrs.frozen
class ChildInfo:
    """One entry of ``which_children()``: ``ref`` is the child's reference (a
    SupervisedRef, or a SupervisorHandle for a nested supervisor), ``None``
    while it does not run."""

    id: str
    ref: Any
    kind: str  # "worker" or "supervisor"
    restart: Restart
    status: str
    restarts: int


@attrs.frozen
class ChildCounts:
    """``count_children()``, as OTP counts: every spec, the running ones, and
    specs by kind."""

    specs: int
    active: int
    supervisors: int
    workers: int
