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

Restarted actors keep their actor id (``Runtime.spawn(_reuse_id=...)``), so
references stay valid; see ``_supref`` for how calls behave meanwhile.
"""

from __future__ import annotations

import collections
import logging
import math
import random
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ..errors import (
    ActorDiedError,
    ProtocolError,
    RestartIntensityError,
    SupervisorError,
)
from ._supchild import ChildCounts, ChildInfo, Slot, SupervisorStats
from ._supref import SupervisedRef
from ._supspec import BRUTAL_KILL, ChildSpec, Heartbeat, Restart, Strategy, Supervisor

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ["SupervisorHandle", "start_supervisor"]

log = logging.getLogger("pyisolate.supervisor")

_ACTIVE = ("running", "restarting", "stopping")


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

    def __init__(self, rt: Runtime, spec: Supervisor, *, parent: SupervisorHandle | None,
                 prefix: str, previous: SupervisorHandle | None = None) -> None:
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

    def __repr__(self) -> str:
        return f"<SupervisorHandle {self.name!r} {len(self._slots)} children>"

    @property
    def done(self) -> bool:
        """True once the supervisor stopped (by request or by giving up)."""
        return self._down

    # -- public API ---------------------------------------------------------------

    def ref(self, child_id: str) -> SupervisedRef:
        """The reference of actor child ``child_id``; valid across restarts."""
        slot = self._slot(child_id)
        if slot.spec.is_supervisor:
            raise TypeError(f"child {child_id!r} is a supervisor: use supervisor({child_id!r})")
        if slot.ref is None:
            raise SupervisorError(f"child {child_id!r} has never run")
        return slot.ref

    def supervisor(self, child_id: str) -> SupervisorHandle:
        """The current handle of nested supervisor ``child_id`` (a restart
        replaces it: ask again after one)."""
        slot = self._slot(child_id)
        if slot.nested is None:
            raise SupervisorError(f"child {child_id!r} is not a running supervisor")
        return slot.nested

    def which_children(self) -> list[ChildInfo]:
        """Every child, in start order, with its status and restart count."""
        return [slot.info() for slot in self._slots]

    def count_children(self) -> ChildCounts:
        return ChildCounts(
            specs=len(self._slots),
            active=sum(1 for s in self._slots if s.is_up()),
            supervisors=sum(1 for s in self._slots if s.spec.is_supervisor),
            workers=sum(1 for s in self._slots if not s.spec.is_supervisor),
        )

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

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child by its shutdown spec; it stays down (a temporary child
        is deleted) until :meth:`restart_child`."""
        async with self._lock:
            self._check_up()
            slot = self._slot(child_id)
            await self._terminate(slot, "terminated")
            if slot.spec.restart is Restart.TEMPORARY:
                self._delete(slot)

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

    async def delete_child(self, child_id: str) -> None:
        """Forget a terminated child's spec."""
        async with self._lock:
            slot = self._slot(child_id)
            if slot.status != "terminated":
                raise SupervisorError(f"child {child_id!r} is {slot.status}, not terminated")
            self._delete(slot)

    async def stop(self) -> None:
        """Stop every child in reverse start order, then the supervisor."""
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
            nested = SupervisorHandle(self.runtime, spec.target, parent=self,
                                      prefix=f"{self.prefix}{spec.id}/", previous=slot.nested)
            try:
                await nested._start()
            finally:
                if slot.nested is not None and nested.done is False:
                    slot.nested.settled.set()
            slot.nested = nested
            slot.incarnation += 1
            self._tg.start_soon(self._watch_nested, slot, slot.incarnation, nested)
        else:
            rt = self.runtime
            ref = await rt.spawn(spec.target, *spec.args, name=f"{self.prefix}{spec.id}",
                                 options=spec.options, sandbox=spec.sandbox,
                                 _reuse_id=slot.actor_id,
                                 # A template of its own: siblings never share a sandbox.
                                 _template=("child", slot.actor_id) if spec.template else False,
                                 **spec.kwargs)
            if slot.ref is None:
                slot.ref = SupervisedRef(rt, ref.id, ref.name, ref.methods,
                                         ref.default_timeout, slot)
            slot.actor_id = ref.id
            slot.incarnation += 1
            record = rt._records[ref.id]
            self._tg.start_soon(self._watch_actor, slot, slot.incarnation, record)
            heartbeat = spec.heartbeat or self.spec.heartbeat
            if heartbeat is not None:
                self._tg.start_soon(self._heartbeat, slot, slot.incarnation, record, heartbeat)
        slot.failed_starts = 0
        slot.set_status("running")

    # -- watching -----------------------------------------------------------------

    async def _watch_actor(self, slot: Slot, incarnation: int, record: Any) -> None:
        await record.process.exited.wait()
        # The runtime's _on_exit has run by now (same task, no await between).
        normal = record.state == "stopped" or (
            record.process.returncode == 0 and not isinstance(record.death, ProtocolError))
        cause = None if normal else record.death or ActorDiedError(
            f"actor {record.name!r} exited", actor=record.name)
        await self._on_exit(slot, incarnation, normal, cause)

    async def _watch_nested(self, slot: Slot, incarnation: int, nested: SupervisorHandle) -> None:
        await nested._done.wait()
        if nested.failure is not None:
            self.stats.escalations += 1
        await self._on_exit(slot, incarnation, nested.failure is None, nested.failure)

    async def _heartbeat(self, slot: Slot, incarnation: int, record: Any, hb: Heartbeat) -> None:
        misses = 0
        while True:
            await anyio.sleep(hb.interval)
            if slot.incarnation != incarnation or record.state != "running":
                return
            try:
                await self.runtime.ping(record.ref, hb.timeout)
                misses = 0
            except TimeoutError:
                misses += 1
            except Exception:
                return  # it died or stopped: the watcher handles that
            if misses >= hb.tolerance and record.state == "running":
                self.stats.hangs += 1
                record.death = ActorDiedError(
                    f"actor {record.name!r} missed {misses} heartbeats "
                    f"({hb.timeout} s each): killed as hung", actor=record.name, exitcode=-9)
                log.error("supervisor %r: child %r is hung (%d heartbeats missed): killing it",
                          self.name, slot.id, misses)
                record.process.kill()
                return

    async def _on_exit(self, slot: Slot, incarnation: int, normal: bool,
                       cause: BaseException | None) -> None:
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
            restart = slot.spec.restart is Restart.PERMANENT or (
                slot.spec.restart is Restart.TRANSIENT and not normal)
            if not restart:
                if slot.nested is not None:
                    slot.nested.settled.set()
                slot.set_status("terminated")
                if slot.spec.restart is Restart.TEMPORARY:
                    self._delete(slot)
                return
            await self._restart(slot, cause)

    # -- restarting -----------------------------------------------------------------

    def _allow_restart(self) -> bool:
        """Record a restart; False if that exceeds the intensity."""
        now = anyio.current_time()
        self._restarts.append(now)
        while self._restarts and self._restarts[0] < now - self.spec.period:
            self._restarts.popleft()
        return len(self._restarts) <= self.spec.intensity

    async def _restart(self, slot: Slot, cause: BaseException | None) -> None:
        if not self._allow_restart():
            await self._give_up(slot, cause)
            return
        self.stats.restarts += 1
        strategy = self.spec.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            group = [slot]
        elif strategy is Strategy.ONE_FOR_ALL:
            group = list(self._slots)
        else:
            group = self._slots[self._slots.index(slot):]
        slot.set_status("restarting")
        others = [s for s in group if s is not slot and s.status == "running"]
        for other in reversed(others):
            log.info("supervisor %r: stopping %r (%s after %r failed)",
                     self.name, other.id, strategy.value, slot.id)
            await self._terminate(other, "restarting")
        todo = []
        for s in group:
            if s is slot or s in others:
                if s is not slot and s.spec.restart is Restart.TEMPORARY:
                    self._delete(s)  # OTP: a temporary child is never restarted
                else:
                    todo.append(s)
        await self._start_in_order(todo, cause)

    async def _start_in_order(self, todo: list[Slot], cause: BaseException | None) -> None:
        for i, s in enumerate(todo):
            if s.status != "restarting":
                continue
            s.restarts += 1
            log.warning("supervisor %r: restarting child %r (restart %d; cause: %s)",
                        self.name, s.id, s.restarts, cause)
            try:
                await self._launch(s)
            except Exception as exc:
                self.stats.start_failures += 1
                self.stats.last_failure = exc
                s.failed_starts += 1
                backoff = s.spec.backoff
                delay = backoff.delay(s.failed_starts, random.random()) if backoff else 0.0
                log.warning("supervisor %r: child %r failed to restart: %s; retrying in %.3f s",
                            self.name, s.id, exc, delay)
                assert self._tg is not None
                self._tg.start_soon(self._retry, todo[i:], exc, delay)
                return

    async def _retry(self, todo: list[Slot], cause: BaseException, delay: float) -> None:
        await anyio.sleep(delay)
        async with self._lock:
            todo = [s for s in todo if s.status == "restarting" and s in self._slots]
            if self._down or not todo:
                return
            if not self._allow_restart():
                await self._give_up(todo[0], cause)
                return
            self.stats.restarts += 1
            await self._start_in_order(todo, cause)

    async def _give_up(self, slot: Slot, cause: BaseException | None) -> None:
        self._down = True
        self.stats.give_ups += 1
        error = RestartIntensityError(
            f"supervisor {self.name!r} gave up: more than {self.spec.intensity} restarts "
            f"within {self.spec.period} s; the last failure (child {slot.id!r}): {cause}")
        error.__cause__ = cause
        log.error("%s", error)
        self.failure = error
        with anyio.CancelScope(shield=True):
            await self._stop_children()
        self._finish()

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
                    record.process.kill()
                    await record.process.exited.wait()
                else:
                    await self.runtime.stop_actor(
                        record.id, math.inf if shutdown is None else float(shutdown))
        slot.set_status(status)

    def _delete(self, slot: Slot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
        slot.set_status("deleted")

    def _finish(self) -> None:
        for slot in self._slots:
            if slot.nested is not None:
                slot.nested.settled.set()
            slot.set_status(slot.status)
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
        return slot

    def _slot(self, child_id: str) -> Slot:
        for slot in self._slots:
            if slot.id == child_id:
                return slot
        raise KeyError(f"supervisor {self.name!r} has no child {child_id!r}")

    def _check_up(self) -> None:
        if self._down:
            raise SupervisorError(f"supervisor {self.name!r} is stopped") from self.failure
