"""What this layer offers the supervisors above it (``pyisolate.supervision``).

Supervision imports the actors' public names and never their internals; the
runtime never imports supervision. The two meet here: the runtime's
``supervise`` takes any spec that can start itself on a runtime
(:class:`Supervisable`, double dispatch, so this layer names no supervision
class), and a supervisor watches and stops each incarnation of its children
through an :class:`IncarnationView` (the runtime's ``incarnation(actor_id)``).
The rest of the interface is the section "the interface of
pyisolate.supervision" at the end of :class:`~pyisolate.actors.Runtime`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio

from .._wire import Kind
from ._process import KILL_GRACE

if TYPE_CHECKING:
    from ._blocking import BlockingRuntime
    from ._record import _Record
    from ._ref import ActorRef
    from ._runtime import Runtime

__all__ = ["BlockingSupervisable", "CallHolder", "IncarnationView", "Supervisable"]

_H_co = TypeVar("_H_co", covariant=True)


class Supervisable(Protocol[_H_co]):
    """A spec that starts itself on a runtime: what ``Runtime.supervise`` takes."""

    async def start(self, runtime: Runtime) -> _H_co: ...


class BlockingSupervisable(Protocol[_H_co]):
    """A spec that starts itself from synchronous code: what
    ``BlockingRuntime.supervise`` takes."""

    def start_blocking(self, runtime: BlockingRuntime) -> _H_co: ...


class CallHolder(Protocol):
    """Holds the calls to one actor id between its incarnations (registered
    with ``Runtime.hold_calls``; the router offers it each actor-to-actor
    frame for that id while no incarnation runs)."""

    def offer(self, src: Any, kind: Kind, call_id: int, frame: bytes, fds: list[int]) -> bool:
        """True: held (or consumed); False: route the frame as usual."""

    def deliver(self) -> None:
        """The next incarnation is READY: send what is held, in order."""


class IncarnationView:
    """A supervisor's handle on one incarnation of an actor: its record,
    not whichever record holds the actor id later."""

    __slots__ = ("_record", "_runtime")

    def __init__(self, runtime: Runtime, record: _Record) -> None:
        self._runtime = runtime
        self._record = record

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def state(self) -> str:
        return self._record.state

    @property
    def connected(self) -> bool:
        return self._record.state == "running" and self._record.routing is not None

    @property
    def ref(self) -> ActorRef | None:
        return self._record.ref

    @property
    def death(self) -> BaseException | None:
        return self._record.death

    @property
    def returncode(self) -> int | None:
        process = self._record.process
        return None if process is None else process.returncode

    async def wait_exited(self) -> None:
        process = self._record.process
        if process is not None:
            # The runtime handles the exit in the task that sets this event,
            # with no await in between: its state says how it ended.
            await process.exited.wait()

    async def ping(self, timeout: float) -> None:
        record = self._record
        if record.ref is None:
            raise record.closed_error()
        await self._runtime.ping(record.ref, timeout)

    async def stop(self, timeout: float) -> None:
        await self._runtime.stop_actor(self._record.id, timeout)

    async def brutal_kill(self) -> None:
        record = self._record
        if record.process is None:
            return
        if record.state in ("running", "starting"):
            record.state = "stopping"  # a stop: its exit is normal
        record.process.kill()  # escalates to the sandbox by itself
        with anyio.move_on_after(3 * KILL_GRACE):
            await record.process.exited.wait()

    def kill(self, cause: BaseException) -> None:
        record = self._record
        record.death = cause
        if record.process is not None:
            record.process.kill()
