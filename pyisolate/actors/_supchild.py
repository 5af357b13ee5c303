"""One child slot of a running supervisor, and what a supervisor reports.

A slot outlives the incarnations of its child: it keeps the actor id (so
every reference, those held by other actors included, reaches the next
incarnation), the supervised reference, and a ``changed`` event that wakes
callers waiting for the child to run again.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ..errors import ActorClosedError
from ._supspec import ChildSpec, Restart, idempotent_methods

if TYPE_CHECKING:
    from ._runtime import Runtime
    from ._supervisor import SupervisorHandle
    from ._supref import SupervisedRef

__all__ = ["ChildCounts", "ChildInfo", "SupervisorStats"]

# Slot states. "running": an incarnation is up (or died a moment ago and the
# supervisor has not handled it yet); "restarting": down, to be started again;
# "stopping": the supervisor is stopping it; "terminated": down and stays down
# until restart_child; "deleted": gone from the supervisor.
WAITING = frozenset({"new", "running", "restarting", "stopping"})


def _until(deadline: float) -> float:
    return math.inf if deadline == math.inf else max(0.0, deadline - anyio.current_time())


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


@attrs.define(eq=False)
class Slot:
    spec: ChildSpec
    runtime: Runtime
    owner: SupervisorHandle
    status: str = "new"
    actor_id: int | None = None
    incarnation: int = 0
    restarts: int = 0
    failed_starts: int = 0  # consecutive, for backoff
    ref: SupervisedRef | None = None
    nested: SupervisorHandle | None = None
    changed: anyio.Event = attrs.Factory(anyio.Event)
    idempotent: frozenset[str] = frozenset()
    # The same child in the next incarnation of a restarted nested supervisor.
    successor: Slot | None = None

    def __attrs_post_init__(self) -> None:
        self.idempotent = self.spec.idempotent | idempotent_methods(self.spec.target)

    @property
    def id(self) -> str:
        return self.spec.id

    def set_status(self, status: str) -> None:
        self.status = status
        event, self.changed = self.changed, anyio.Event()
        event.set()
        self.recheck_held()

    def recheck_held(self) -> None:
        """Deliver or fail the actor-to-actor calls held for this child."""
        held = self.runtime._holds.get(self.actor_id) if self.actor_id is not None else None
        if held is not None and held.slot is self:
            held.recheck()

    def holds_calls(self) -> bool:
        """True while a call to this child should wait for its next
        incarnation (the same test as :meth:`wait_up`, without waiting)."""
        if self.successor is not None:
            return self.successor.holds_calls()
        owner = self.owner
        if self.status in WAITING and not owner.done:
            return True
        return owner.failure is not None and not owner.settled.is_set()

    def final_error(self) -> BaseException:
        """Why a call waiting for this child fails: it will not run again."""
        owner = self.owner
        if owner.failure is not None:
            return owner.failure
        return ActorClosedError(
            f"supervised actor {self.id!r} is {self.status}"
            + (" (its supervisor is down)" if owner.done else ""),
            actor=self.id,
        )

    def record(self) -> Any:
        return None if self.actor_id is None else self.runtime._records.get(self.actor_id)

    def is_up(self) -> bool:
        if self.status != "running":
            return False
        if self.nested is not None:
            return not self.nested.done
        record = self.record()
        return record is not None and record.state == "running"

    def info(self) -> ChildInfo:
        up = self.is_up()
        ref = (self.nested if self.spec.is_supervisor else self.ref) if up else None
        return ChildInfo(
            self.id,
            ref,
            "supervisor" if self.spec.is_supervisor else "worker",
            self.spec.restart,
            self.status,
            self.restarts,
        )

    async def wait_past(self, incarnation: int, deadline: float) -> None:
        """Return once the supervisor has handled the end of ``incarnation``
        (a call that failed on it is then retried on the next one)."""
        while (
            self.incarnation == incarnation
            and self.status == "running"
            and self.successor is None
            and not self.owner.done
        ):
            with anyio.fail_after(_until(deadline)):
                await self.changed.wait()

    async def wait_up(self, deadline: float) -> None:
        """Return once an incarnation runs (see ``_supref.Slot``)."""
        while not self.is_up():
            if self.successor is not None:
                await self.successor.wait_up(deadline)
                return
            owner = self.owner
            if self.status in WAITING and not owner.done:
                # While the status says "running" the incarnation died a moment
                # ago: the supervisor changes the status once it sees the exit.
                event = self.changed
            elif owner.failure is not None and not owner.settled.is_set():
                # Our supervisor gave up; its parent may start a new one.
                event = owner.settled
            else:
                error = ActorClosedError(
                    f"supervised actor {self.id!r} is {self.status}"
                    + (" (its supervisor is down)" if owner.done else ""),
                    actor=self.id,
                )
                record = self.record()
                cause = owner.failure or (record.death if record is not None else None)
                raise error from cause
            with anyio.fail_after(_until(deadline)):
                await event.wait()
