"""The handle of a running supervisor: what ``await rt.supervise(spec)`` returns.

OTP's supervisor API on top of the machinery in ``_running``: references
that follow their child across restarts, the children's status, and
``start_child``, ``terminate_child``, ``restart_child``, ``delete_child``,
each made under the supervisor's lock. A restarted nested supervisor is a new
handle; the old one's methods follow it (``done``, ``wait`` and ``stats``
describe one incarnation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from ..errors import SupervisorError
from ._policy import Restart
from ._running import RunningSupervisor, on_live
from ._slot import Slot
from ._stats import ChildCounts, ChildInfo

if TYPE_CHECKING:
    from ._host import SupervisorHost
    from ._ref import SupervisedRef
    from ._spec import ChildSpec, Supervisor

__all__ = ["SupervisorHandle"]


class SupervisorHandle(RunningSupervisor):
    """A running supervisor, returned by ``await rt.supervise(spec)``.

    ``ref(child_id)`` gives a reference that follows the child across
    restarts; ``wait()`` returns when the supervisor stopped and raises
    RestartIntensityError if it gave up; ``stats`` counts what happened.
    """

    @classmethod
    async def start_tree(cls, host: SupervisorHost, spec: Supervisor) -> SupervisorHandle:
        """Start a top-level supervisor and its children on ``host``; it stops
        before the host's actors when the host closes."""
        handle = cls(host, spec, parent=None, prefix=f"{spec.name}/" if spec.name else "")
        await handle._start()
        host.before_close(handle.stop)
        return handle

    def __repr__(self) -> str:
        return f"<SupervisorHandle {self.name!r} {len(self._slots)} children>"

    @on_live
    def ref(self, child_id: str) -> SupervisedRef:
        """The reference of actor child ``child_id``; valid across restarts."""
        slot = self._slot(child_id)
        if slot.spec.is_supervisor:
            raise TypeError(f"child {child_id!r} is a supervisor: use supervisor({child_id!r})")
        if slot.ref is None:
            raise SupervisorError(f"child {child_id!r} has never run")
        return slot.ref

    @on_live
    def supervisor(self, child_id: str) -> SupervisorHandle:
        """The handle of nested supervisor ``child_id``. A restart of that
        supervisor replaces it; the old handle's methods (not ``done``,
        ``wait``, ``stats``, which describe one incarnation) follow to the new."""
        slot = self._slot(child_id)
        if slot.nested is None:
            raise SupervisorError(f"child {child_id!r} is not a running supervisor")
        return cast("SupervisorHandle", slot.nested)

    @on_live
    def which_children(self) -> list[ChildInfo]:
        """Every child, in start order, with its status and restart count."""
        return [slot.info() for slot in self._slots]

    @on_live
    def count_children(self) -> ChildCounts:
        return ChildCounts(
            specs=len(self._slots),
            active=sum(1 for s in self._slots if s.is_up()),
            supervisors=sum(1 for s in self._slots if s.spec.is_supervisor),
            workers=sum(1 for s in self._slots if not s.spec.is_supervisor),
        )

    @on_live
    def waiting_calls(self, child_id: str) -> int:
        """How many actor-to-actor calls wait for child ``child_id`` to run again."""
        held = self._slot(child_id).held
        return 0 if held is None else len(held)

    @on_live
    async def start_child(self, spec: ChildSpec) -> Any:
        """Add ``spec`` after the existing children and start it; on failure the
        spec is not added and SupervisorError is raised."""
        async with self._lock:
            self._check_up()
            if any(s.id == spec.id for s in self._slots):
                raise ValueError(f"a child with id {spec.id!r} already exists")
            slot = Slot(spec, self.runtime, self)
            try:
                await self._launch(slot)
            except Exception as exc:
                raise SupervisorError(f"child {spec.id!r} failed to start: {exc}") from exc
            self._slots.append(slot)
            return slot.nested if spec.is_supervisor else slot.ref

    @on_live
    async def terminate_child(self, child_id: str) -> None:
        """Stop a child by its shutdown spec; it stays down (a temporary child
        is deleted) until :meth:`restart_child`."""
        async with self._lock:
            self._check_up()
            slot = self._slot(child_id)
            await slot.terminate("terminated")
            if slot.spec.restart is Restart.TEMPORARY:
                self._delete(slot)

    @on_live
    async def restart_child(self, child_id: str) -> None:
        """Start again a child that was terminated."""
        async with self._lock:
            self._check_up()
            slot = self._slot(child_id)
            if slot.status != "terminated":
                raise SupervisorError(f"child {child_id!r} is {slot.status}, not terminated")
            try:
                await self._launch(slot)
            except Exception as exc:
                slot.set_status("terminated")
                raise SupervisorError(f"child {child_id!r} failed to start: {exc}") from exc

    @on_live
    async def delete_child(self, child_id: str) -> None:
        """Forget a terminated child's spec."""
        async with self._lock:
            slot = self._slot(child_id)
            if slot.status != "terminated":
                raise SupervisorError(f"child {child_id!r} is {slot.status}, not terminated")
            self._delete(slot)

    async def wait(self) -> None:
        """Wait until the supervisor stops; raise RestartIntensityError (with
        the last failure as its cause) if it gave up."""
        await self._done.wait()
        if self.failure is not None:
            raise self.failure
