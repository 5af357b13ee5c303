"""One child of a running supervisor, across its incarnations.

A slot outlives the incarnations of its child: it keeps the actor id (so
every reference, those held by other actors included, reaches the next
incarnation), the supervised reference, the calls held for the child while
it restarts, and a ``changed`` event that wakes callers waiting for the child
to run again. It starts and stops the incarnations of an actor child; its
supervisor decides when (nested supervisors it starts itself).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import anyio
import attrs

from ..errors import ActorClosedError
from ._held_calls import HeldCalls
from ._policy import BRUTAL_KILL, idempotent_methods
from ._ref import SupervisedRef
from ._stats import ChildInfo

if TYPE_CHECKING:
    from collections.abc import Hashable

    from ._host import Incarnation, SupervisorHost
    from ._running import RunningSupervisor
    from ._spec import ChildSpec

__all__ = ["WAITING", "Slot"]

# Slot states. "running": an incarnation is up (or died a moment ago and the
# supervisor has not handled it yet); "restarting": down, to be started again;
# "stopping": the supervisor is stopping it; "terminated": down and stays down
# until restart_child; "deleted": gone from the supervisor.
WAITING = frozenset({"new", "running", "restarting", "stopping"})


def _until(deadline: float) -> float:
    return math.inf if deadline == math.inf else max(0.0, deadline - anyio.current_time())


@attrs.define(eq=False)
class Slot:
    spec: ChildSpec
    host: SupervisorHost
    owner: RunningSupervisor
    status: str = "new"
    actor_id: int | None = None
    incarnation: int = 0
    restarts: int = 0
    failed_starts: int = 0  # consecutive, for backoff
    ref: SupervisedRef | None = None
    nested: RunningSupervisor | None = None
    held: HeldCalls | None = None
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

    # -- one incarnation of an actor child ------------------------------------------

    async def start_incarnation(self, name: str) -> Incarnation:
        """Start the next incarnation of this actor child; raises on failure."""
        spec = self.spec
        first = self.actor_id is None
        if first:
            # The id is fixed before the first start: the child's template
            # (and so its sandbox) is keyed by it from the start, so that
            # siblings never share one and restarts reuse the child's own.
            self.actor_id = self.host.reserve_actor_id()
        assert self.actor_id is not None
        try:
            ref = await self.host.spawn_incarnation(
                cast("type | str", spec.target),  # not a Supervisor: its owner checked
                spec.args,
                spec.kwargs,
                actor_id=self.actor_id,
                name=name,
                sandbox=spec.sandbox,
                options=spec.options,
                template_scope=self._template_scope(),
            )
        except BaseException:
            if first:  # the slot is dropped: so is the template made for it
                self.release_template()
                self.actor_id = None
            raise
        if self.ref is None:
            self.ref = SupervisedRef(
                self.host, ref.id, ref.name, ref.methods, ref.default_timeout, self
            )
        if first:  # actor-to-actor calls wait across restarts
            self.held = HeldCalls(self.host, ref.id, self)
            self.host.hold_calls(ref.id, self.held)
        self.incarnation += 1
        current = self.host.incarnation(ref.id)
        assert current is not None
        return current

    async def terminate(self, status: str) -> None:
        """Stop the current incarnation by the spec's shutdown; then ``status``."""
        self.set_status("stopping")
        current = self.current()
        shutdown = self.spec.shutdown
        if self.nested is not None:
            # A nested supervisor stops its own children by their own
            # shutdown specs; cutting that short would orphan them.
            await self.nested.stop()
        elif current is not None and shutdown == BRUTAL_KILL:
            await current.brutal_kill()
        elif current is not None:
            await current.stop(math.inf if shutdown is None else float(shutdown))
        self.set_status(status)
        if status == "terminated":  # down until restart_child, if ever: no idle template
            self.release_template()

    def current(self) -> Incarnation | None:
        """The latest incarnation (a failed start included), if any."""
        return None if self.actor_id is None else self.host.incarnation(self.actor_id)

    def _template_scope(self) -> Hashable | None:
        # Its own, by its actor id, which every incarnation keeps.
        return ("child", self.actor_id) if self.spec.template else None

    def release_template(self) -> None:
        """Shut down the child's own template: it will not start from it again."""
        scope = self._template_scope()
        if self.actor_id is not None and not self.spec.is_supervisor and scope is not None:
            self.host.release_template(scope)

    # -- calls held across restarts ------------------------------------------------

    def take_over(self, old: Slot) -> None:
        """Become the same child of the previous incarnation of a restarted
        nested supervisor: its id, reference and held calls, so that the
        references stay valid."""
        self.actor_id, self.ref, self.nested, self.held = (
            old.actor_id,
            old.ref,
            old.nested,
            old.held,
        )
        if self.ref is not None:
            self.ref._slot = self
        old.successor = self
        if self.held is not None:
            self.held.slot = self
            self.held.recheck()
        elif self.actor_id is not None:
            self.held = HeldCalls(self.host, self.actor_id, self)
            self.host.hold_calls(self.actor_id, self.held)

    def release_calls(self) -> None:
        """Fail the held calls: the child is deleted and will not run again."""
        if self.actor_id is not None:
            self.host.release_calls(self.actor_id)
        if self.held is not None:
            self.held.fail(self.final_error())

    def recheck_held(self) -> None:
        """Deliver or fail the actor-to-actor calls held for this child."""
        if self.held is not None and self.held.slot is self:
            self.held.recheck()

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

    # -- status ---------------------------------------------------------------------

    def is_up(self) -> bool:
        if self.status != "running":
            return False
        if self.nested is not None:
            return not self.nested.done
        current = self.current()
        return current is not None and current.state == "running"

    def info(self) -> ChildInfo:
        up = self.is_up()
        ref: Any = (self.nested if self.spec.is_supervisor else self.ref) if up else None
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
        """Return once an incarnation runs (see ``SupervisedRef``)."""
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
                current = self.current()
                cause = owner.failure or (current.death if current is not None else None)
                raise error from cause
            with anyio.fail_after(_until(deadline)):
                await event.wait()
