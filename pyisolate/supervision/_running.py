"""A running supervisor's machinery: starts its children, watches them, restarts them.

Erlang/OTP's semantics, taken whole (the vocabulary is in ``_policy``).
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

Restarted actors keep their actor id (the host's ``spawn_incarnation``), so
references stay valid; see ``_ref`` for how calls behave meanwhile.

The public API (``ref``, ``start_child`` and the rest) is the subclass
:class:`~pyisolate.supervision._handle.SupervisorHandle`'s; this class is
complete without it: a stop, an exit and its restarts need nothing more.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar, cast

import anyio
import anyio.abc

from ..errors import RestartIntensityError, SupervisorError
from ._intensity import RestartIntensity, affected, backoff_delay
from ._policy import Restart
from ._slot import Slot
from ._stats import SupervisorStats
from ._watchers import heartbeat_loop, watch_actor, watch_nested

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._host import SupervisorHost
    from ._spec import Supervisor

__all__ = ["RunningSupervisor", "on_live"]

log = logging.getLogger("pyisolate.supervisor")

_ACTIVE = ("running", "restarting", "stopping")
_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S", bound="RunningSupervisor")


def on_live(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """Run ``method`` on the live incarnation of the handle: a restarted
    nested supervisor is a new handle, and the old one's methods follow it,
    so that a handle a user holds never goes stale."""

    @functools.wraps(method)
    def follow(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return method(self._live(), *args, **kwargs)

    return follow


class RunningSupervisor:
    """One incarnation of a supervisor: its children's slots, the lock every
    change is made under, the task group of its watchers."""

    def __init__(
        self,
        host: SupervisorHost,
        spec: Supervisor,
        *,
        parent: RunningSupervisor | None,
        prefix: str,
        previous: RunningSupervisor | None = None,
    ) -> None:
        self.runtime = host
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
        self._intensity = RestartIntensity(spec.intensity, spec.period)
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
        self._next: RunningSupervisor | None = None

    @property
    def done(self) -> bool:
        """True once the supervisor stopped (by request or by giving up)."""
        return self._down

    def _live(self: _S) -> _S:
        handle: RunningSupervisor = self
        while handle._next is not None:
            handle = handle._next
        return cast("_S", handle)  # each incarnation is made by type(self)

    @on_live
    async def stop(self) -> None:
        """Stop every child in reverse start order, then the supervisor."""
        async with self._lock:
            if self._down:
                return
            self._down = True
            await self._stop_children()
            self._finish()

    # -- starting -----------------------------------------------------------------

    async def _start(self) -> None:
        self._tg = await self.runtime.start_service(self._host)
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
        if spec.is_supervisor:
            nested = type(self)(
                self.runtime,
                cast("Supervisor", spec.target),
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
            current = await slot.start_incarnation(f"{self.prefix}{spec.id}")
            self._tg.start_soon(watch_actor, self, slot, slot.incarnation, current)
            heartbeat = spec.heartbeat or self.spec.heartbeat
            if heartbeat is not None:
                self._tg.start_soon(
                    heartbeat_loop, self, slot, slot.incarnation, current, heartbeat
                )
        slot.failed_starts = 0
        slot.set_status("running")

    # -- an exit, and the restarts it calls for -----------------------------------

    async def _child_exited(
        self, slot: Slot, incarnation: int, normal: bool, cause: BaseException | None
    ) -> None:
        """A watcher saw ``incarnation`` of ``slot`` end."""
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
                slot.release_template()
                if slot.spec.restart is Restart.TEMPORARY:
                    self._delete(slot)
                return
            await self._restart(slot, cause)

    async def _restart(self, slot: Slot, cause: BaseException | None) -> None:
        """Handle the failure of ``slot`` by the strategy: stop the other
        children it takes down (in reverse order), start them all again."""
        if not self._intensity.allow(anyio.current_time()):
            await self._give_up(slot, cause)
            return
        self.stats.restarts += 1
        strategy = self.spec.strategy
        group = affected(strategy, self._slots, slot)
        slot.set_status("restarting")
        others = [s for s in group if s is not slot and s.status == "running"]
        for other in reversed(others):
            log.info(
                "supervisor %r: stopping %r (%s after %r failed)",
                self.name,
                other.id,
                strategy.value,
                slot.id,
            )
            await other.terminate("restarting")
        todo = []
        for s in group:
            if s is slot or s in others:
                if s is not slot and s.spec.restart is Restart.TEMPORARY:
                    self._delete(s)  # OTP: a temporary child is never restarted
                else:
                    todo.append(s)
        await self._start_in_order(todo, cause)

    async def _start_in_order(self, todo: list[Slot], cause: BaseException | None) -> None:
        """Start ``todo`` in start order; the first that fails is retried, with
        the rest, after its backoff (in a task: the lock is released meanwhile)."""
        for i, s in enumerate(todo):
            if s.status != "restarting":
                continue
            s.restarts += 1
            log.warning(
                "supervisor %r: restarting child %r (restart %d; cause: %s)",
                self.name,
                s.id,
                s.restarts,
                cause,
            )
            try:
                await self._launch(s)
            except Exception as exc:
                self.stats.start_failures += 1
                self.stats.last_failure = exc
                s.failed_starts += 1
                delay = backoff_delay(s.spec.backoff, s.failed_starts)
                log.warning(
                    "supervisor %r: child %r failed to restart: %s; retrying in %.3f s",
                    self.name,
                    s.id,
                    exc,
                    delay,
                )
                assert self._tg is not None
                self._tg.start_soon(self._retry, todo[i:], exc, delay)
                return

    async def _retry(self, todo: list[Slot], cause: BaseException, delay: float) -> None:
        await anyio.sleep(delay)
        async with self._lock:
            todo = [s for s in todo if s.status == "restarting" and s in self._slots]
            if self._down or not todo:
                return
            if not self._intensity.allow(anyio.current_time()):
                await self._give_up(todo[0], cause)
                return
            self.stats.restarts += 1
            await self._start_in_order(todo, cause)

    async def _give_up(self, slot: Slot, cause: BaseException | None) -> None:
        """Past the intensity: stop every child and fail with RestartIntensityError."""
        self._down = True
        self.stats.give_ups += 1
        error = RestartIntensityError(
            f"supervisor {self.name!r} gave up: more than {self.spec.intensity} restarts "
            f"within {self.spec.period} s; the last failure (child {slot.id!r}): {cause}"
        )
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
                await slot.terminate("terminated")
            else:
                slot.set_status(slot.status)  # wake waiters: the supervisor is down

    def _delete(self, slot: Slot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
        slot.set_status("deleted")
        slot.release_template()
        slot.release_calls()

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
            slot.release_template()
        self._done.set()

    # -- helpers --------------------------------------------------------------------

    def _inherit(self, slot: Slot) -> Slot:
        """Take over the same child of the previous incarnation of this
        supervisor (if any), so that its references stay valid."""
        old = None
        if self._previous is not None:
            old = next((s for s in self._previous._slots if s.id == slot.id), None)
        if old is not None and old.spec.is_supervisor == slot.spec.is_supervisor:
            slot.take_over(old)
        return slot

    def _slot(self, child_id: str) -> Slot:
        for slot in self._slots:
            if slot.id == child_id:
                return slot
        raise KeyError(f"supervisor {self.name!r} has no child {child_id!r}")

    def _check_up(self) -> None:
        if self._down:
            raise SupervisorError(f"supervisor {self.name!r} is stopped") from self.failure
