"""A running supervisor: starts its children, watches them, restarts them.

Erlang/OTP's semantics, taken whole (the vocabulary is in ``_supspec``).
Every state change of a supervisor happens under one lock: exits are handled
one at a time and never interleave with ``start_child`` and friends, so the
strategies see a consistent set of children.

An exit is *normal* when the actor was stopped (``stop()``, the supervisor's
own shutdown) or ended itself (:func:`pyisolate.exit_actor`, exit status 0);
anything else is *abnormal*: an exception escaping ``on_start`` at a restart,
the process dying or being signalled, a failed heartbeat, a protocol
violation. Past its restart intensity a supervisor stops its children in
reverse order and fails with RestartIntensityError: a parent supervisor
handles that as its child's abnormal exit; at the top the error is logged and
raised by :meth:`SupervisorHandle.wait` (and by calls on its references).

Restarted actors keep their actor id (``SpawnRequest(actor_id=...)``), so
references stay valid; see ``_supref`` for how calls behave meanwhile.
"""

from __future__ import annotations

import collections
import logging
import math
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ..errors import SupervisorError
from ._process import KILL_GRACE
from ._spawning import SpawnRequest
from ._supchild import ChildCounts, ChildInfo, Slot, SupervisorStats
from ._suphold import register, unregister
from ._supref import SupervisedRef
from ._suprestart import restart
from ._supspec import BRUTAL_KILL, ChildSpec, Restart, Supervisor
from ._supwatch import heartbeat_loop, watch_actor, watch_nested

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ["SupervisorHandle", "start_supervisor"]

log = logging.getLogger("pyisolate.supervisor")

_ACTIVE = ("running", "restarting", "stopping")


def template_scope(actor_id: int) -> tuple[str, int]:
    """The template scope of a supervised child (``SpawnRequest(template_scope=)``):
    its own, by its actor id, which every incarnation keeps."""
    return ("child", actor_id)


async def start_supervisor(rt: Runtime, spec: Supervisor) -> SupervisorHandle:
    """``Runtime.supervise``: start a top-level supervisor and its children."""
    handle = SupervisorHandle(rt, spec, parent=None, prefix=f"{spec.name}/" if spec.name else "")
    await handle._start()
    rt._supervisors.append(handle)
    return handle


class SupervisorHandle:
    """A running supervisor, returned by ``await rt.supervise(spec)``.

    ``ref(child_id)`` gives a reference that follows the child across
    restarts; ``wait()`` returns when the supervisor stopped and raises
    RestartIntensityError if it gave up; ``stats`` counts what happened.
    """

    def __init__(
        self,
        rt: Runtime,
        spec: Supervisor,
        *,
        parent: SupervisorHandle | None,
        prefix: str,
        previous: SupervisorHandle | None = None,
    ) -> None:
        self.runtime = rt
        # The incarnation this one replaces (a restarted nested supervisor):
        # its children's actor ids and references carry over.
        self._previous = previous
        self.spec = spec
        self.parent = parent
        self.prefix = prefix
        self.name = spec.name or (prefix.rstrip("/") or "supervisor")
        self.stats = SupervisorStats()
        self.failure: BaseException | None = None
        self._slots: list[Slot] = []
        self._lock = anyio.Lock()
        self._restarts: collections.deque[float] = collections.deque()
        self._done = anyio.Event()
        # Set once this supervisor, having failed, will not be replaced by a
        # restart (or has been): callers waiting on its children stop waiting.
        self.settled = anyio.Event()
        if parent is None:
            self.settled.set()
        self._down = False
        self._tg: anyio.abc.TaskGroup | None = None
        # The incarnation that replaced this one (a restarted nested
        # supervisor): the public API follows it, so a handle never goes stale.
        self._next: SupervisorHandle | None = None

    def __repr__(self) -> str:
        return f"<SupervisorHandle {self.name!r} {len(self._slots)} children>"

    @property
    def done(self) -> bool:
        """True once the supervisor stopped (by request or by giving up)."""
        return self._down

    # -- public API ---------------------------------------------------------------

    def _live(self) -> SupervisorHandle:
        handle = self
        while handle._next is not None:
            handle = handle._next
        return handle

    def ref(self, child_id: str) -> SupervisedRef:
        """The reference of actor child ``child_id``; valid across restarts."""
        if self._next is not None:
            return self._live().ref(child_id)
        slot = self._slot(child_id)
        if slot.spec.is_supervisor:
            raise TypeError(f"child {child_id!r} is a supervisor: use supervisor({child_id!r})")
        if slot.ref is None:
            raise SupervisorError(f"child {child_id!r} has never run")
        return slot.ref

    def supervisor(self, child_id: str) -> SupervisorHandle:
        """The handle of nested supervisor ``child_id``. A restart of that
        supervisor replaces it; the old handle's methods (not ``done``,
        ``wait``, ``stats``, which describe one incarnation) follow to the new."""
        if self._next is not None:
            return self._live().supervisor(child_id)
        slot = self._slot(child_id)
        if slot.nested is None:
            raise SupervisorError(f"child {child_id!r} is not a running supervisor")
        return slot.nested

    def which_children(self) -> list[ChildInfo]:
        """Every child, in start order, with its status and restart count."""
        if self._next is not None:
            return self._live().which_children()
        return [slot.info() for slot in self._slots]

    def count_children(self) -> ChildCounts:
        if self._next is not None:
            return self._live().count_children()
        return ChildCounts(
            specs=len(self._slots),
            active=sum(1 for s in self._slots if s.is_up()),
            supervisors=sum(1 for s in self._slots if s.spec.is_supervisor),
            workers=sum(1 for s in self._slots if not s.spec.is_supervisor),
        )

    async def start_child(self, spec: ChildSpec) -> Any:
        """Add ``spec`` after the existing children and start it; on failure the
        spec is not added and SupervisorError is raised."""
        if self._next is not None:
            return await self._live().start_child(spec)
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

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child by its shutdown spec; it stays down (a temporary child
        is deleted) until :meth:`restart_child`."""
        if self._next is not None:
            return await self._live().terminate_child(child_id)
        async with self._lock:
            self._check_up()
            slot = self._slot(child_id)
            await self._terminate(slot, "terminated")
            if slot.spec.restart is Restart.TEMPORARY:
                self._delete(slot)

    async def restart_child(self, child_id: str) -> None:
        """Start again a child that was terminated."""
        if self._next is not None:
            return await self._live().restart_child(child_id)
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

    async def delete_child(self, child_id: str) -> None:
        """Forget a terminated child's spec."""
        if self._next is not None:
            return await self._live().delete_child(child_id)
        async with self._lock:
            slot = self._slot(child_id)
            if slot.status != "terminated":
                raise SupervisorError(f"child {child_id!r} is {slot.status}, not terminated")
            self._delete(slot)

    async def stop(self) -> None:
        """Stop every child in reverse start order, then the supervisor."""
        if self._next is not None:
            return await self._live().stop()
        async with self._lock:
            if self._down:
                return
            self._down = True
            await self._stop_children()
            self._finish()

    async def wait(self) -> None:
        """Wait until the supervisor stops; raise RestartIntensityError (with
        the last failure as its cause) if it gave up."""
        await self._done.wait()
        if self.failure is not None:
            raise self.failure

    # -- starting -----------------------------------------------------------------

    async def _start(self) -> None:
        self._tg = await self.runtime._tg.start(self._host)
        try:
            for spec in self.spec.children:
                slot = self._inherit(Slot(spec, self.runtime, self))
                try:
                    await self._launch(slot)
                except Exception as exc:
                    raise SupervisorError(
                        f"supervisor {self.name!r}: child {spec.id!r} failed to start: {exc}"
                    ) from exc
                self._slots.append(slot)
        except BaseException:
            with anyio.CancelScope(shield=True):
                self._down = True
                await self._stop_children()
                self._finish()
            raise

    async def _host(self, *, task_status: anyio.abc.TaskStatus[anyio.abc.TaskGroup]) -> None:
        """Hosts the supervisor's watchers; lives in the runtime's task group."""
        async with anyio.create_task_group() as tg:
            task_status.started(tg)
            await self._done.wait()
            tg.cancel_scope.cancel()

    async def _launch(self, slot: Slot) -> None:
        """Start one incarnation of ``slot`` and watch it; raises on failure."""
        assert self._tg is not None
        spec = slot.spec
        if isinstance(spec.target, Supervisor):
            nested = SupervisorHandle(
                self.runtime,
                spec.target,
                parent=self,
                prefix=f"{self.prefix}{spec.id}/",
                previous=slot.nested,
            )
            try:
                await nested._start()
            finally:
                if slot.nested is not None and nested.done is False:
                    slot.nested._settle()
            if slot.nested is not None:
                slot.nested._next = nested
            slot.nested = nested
            slot.incarnation += 1
            self._tg.start_soon(watch_nested, self, slot, slot.incarnation, nested)
        else:
            rt = self.runtime
            first = slot.actor_id is None
            if first:
                # The id is fixed before the first start: the child's template
                # (and so its sandbox) is keyed by it from the start, so that
                # siblings never share one and restarts reuse the child's own.
                slot.actor_id = rt.reserve_actor_id()
            assert slot.actor_id is not None
            try:
                ref = await rt.spawn_request(
                    SpawnRequest(
                        spec.target,
                        tuple(spec.args),
                        dict(spec.kwargs),
                        name=f"{self.prefix}{spec.id}",
                        sandbox=spec.sandbox,
                        options=spec.options,
                        actor_id=slot.actor_id,
                        template_scope=template_scope(slot.actor_id) if spec.template else False,
                    )
                )
            except BaseException:
                if first:  # the slot is dropped: so is the template made for it
                    self._release_template(slot)
                    slot.actor_id = None
                raise
            if slot.ref is None:
                slot.ref = SupervisedRef(
                    rt, ref.id, ref.name, ref.methods, ref.default_timeout, slot
                )
            if first:
                register(rt, ref.id, slot)  # actor-to-actor calls wait across restarts
            slot.incarnation += 1
            record = rt._records[ref.id]
            self._tg.start_soon(watch_actor, self, slot, slot.incarnation, record)
            heartbeat = spec.heartbeat or self.spec.heartbeat
            if heartbeat is not None:
                self._tg.start_soon(heartbeat_loop, self, slot, slot.incarnation, record, heartbeat)
        slot.failed_starts = 0
        slot.set_status("running")

    # -- watching -----------------------------------------------------------------

    async def _on_exit(
        self, slot: Slot, incarnation: int, normal: bool, cause: BaseException | None
    ) -> None:
        async with self._lock:
            if self._down or slot.incarnation != incarnation or slot.status != "running":
                return  # our own doing (a stop, a strategy's restart) or stale
            if normal:
                self.stats.normal_exits += 1
                log.info("supervisor %r: child %r exited normally", self.name, slot.id)
            else:
                self.stats.failures += 1
                self.stats.last_failure = cause
                log.warning("supervisor %r: child %r failed: %s", self.name, slot.id, cause)
            again = slot.spec.restart is Restart.PERMANENT or (
                slot.spec.restart is Restart.TRANSIENT and not normal
            )
            if not again:
                if slot.nested is not None:
                    slot.nested._settle()
                slot.set_status("terminated")
                self._release_template(slot)
                if slot.spec.restart is Restart.TEMPORARY:
                    self._delete(slot)
                return
            await restart(self, slot, cause)

    # -- stopping -----------------------------------------------------------------

    async def _stop_children(self) -> None:
        for slot in reversed(self._slots):
            if slot.status in _ACTIVE:
                await self._terminate(slot, "terminated")
            else:
                slot.set_status(slot.status)  # wake waiters: the supervisor is down

    async def _terminate(self, slot: Slot, status: str) -> None:
        """Stop the current incarnation by the spec's shutdown; then ``status``."""
        slot.set_status("stopping")
        shutdown = slot.spec.shutdown
        if slot.nested is not None:
            # A nested supervisor stops its own children by their own
            # shutdown specs; cutting that short would orphan them.
            await slot.nested.stop()
        else:
            record = slot.record()
            if record is not None and record.process is not None:
                if shutdown == BRUTAL_KILL:
                    if record.state in ("running", "starting"):
                        record.state = "stopping"
                    record.process.kill()  # escalates to the sandbox by itself
                    with anyio.move_on_after(3 * KILL_GRACE):
                        await record.process.exited.wait()
                else:
                    await self.runtime.stop_actor(
                        record.id, math.inf if shutdown is None else float(shutdown)
                    )
        slot.set_status(status)
        if status == "terminated":  # down until restart_child, if ever: no idle template
            self._release_template(slot)

    def _release_template(self, slot: Slot) -> None:
        """Shut down the child's own template: it will not start from it again."""
        if slot.actor_id is not None and not slot.spec.is_supervisor and slot.spec.template:
            self.runtime.release_template(template_scope(slot.actor_id))

    def _delete(self, slot: Slot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
        slot.set_status("deleted")
        self._release_template(slot)
        if slot.actor_id is not None:
            unregister(self.runtime, slot.actor_id, slot.final_error())

    def _settle(self) -> None:
        """This failed supervisor will not be replaced (or has been)."""
        self.settled.set()
        for slot in self._slots:
            slot.recheck_held()

    def _finish(self) -> None:
        for slot in self._slots:
            if slot.nested is not None:
                slot.nested._settle()
            slot.set_status(slot.status)
            self._release_template(slot)
        self._done.set()

    # -- helpers --------------------------------------------------------------------

    def _inherit(self, slot: Slot) -> Slot:
        """Take over the id and reference of the same child of the previous
        incarnation of this supervisor, so that its references stay valid."""
        old = None
        if self._previous is not None:
            old = next((s for s in self._previous._slots if s.id == slot.id), None)
        if old is not None and old.spec.is_supervisor == slot.spec.is_supervisor:
            slot.actor_id, slot.ref, slot.nested = old.actor_id, old.ref, old.nested
            if slot.ref is not None:
                slot.ref._slot = slot
            old.successor = slot
            if slot.actor_id is not None:
                register(self.runtime, slot.actor_id, slot)
        return slot

    def _slot(self, child_id: str) -> Slot:
        for slot in self._slots:
            if slot.id == child_id:
                return slot
        raise KeyError(f"supervisor {self.name!r} has no child {child_id!r}")

    def _check_up(self) -> None:
        if self._down:
            raise SupervisorError(f"supervisor {self.name!r} is stopped") from self.failure
