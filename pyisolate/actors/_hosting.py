"""What this layer offers the supervisors above it (``pyisolate.supervision``).

Supervision imports the actors' public names and never their internals; the
runtime never imports supervision. The two meet here: the runtime's
``supervise`` takes any spec that can start itself on a runtime
(:class:`Supervisable`, double dispatch, so this layer names no supervision
class), and a supervisor watches and stops each incarnation of its children
through an :class:`IncarnationView` (the runtime's ``incarnation(actor_id)``).
The rest of the interface is :class:`SupervisorHosting`, a mixin of the
Runtime (pyisolate.supervision's ``SupervisorHost`` protocol lists it, and
mypy checks that the Runtime implements it). Not for applications.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio

from ._oob import forward_fds
from ._process import KILL_GRACE
from ._spawning import SpawnRequest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping

    from .._wire import Kind
    from ._blocking import BlockingRuntime
    from ._launchers import ForkLauncher
    from ._options import SpawnOptions
    from ._record import _Record
    from ._ref import ActorRef
    from ._runtime import Runtime
    from ._spawnargs import SandboxArg

__all__ = [
    "BlockingSupervisable",
    "CallHolder",
    "IncarnationView",
    "Supervisable",
    "SupervisorHosting",
]

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


class SupervisorHosting:
    """What a supervisor needs from its runtime beyond the public API; a
    mixin of the Runtime, whose state it declares for the type checker."""

    _ids: Iterator[int]
    _records: dict[int, _Record]
    _holds: dict[int, Any]
    _tg: Any
    _before_close: list[Callable[[], Awaitable[None]]]
    _forks: ForkLauncher
    _spawn: Callable[[SpawnRequest], Awaitable[ActorRef]]
    _forward: Callable[..., None]
    _send_error_to: Callable[[int, int, int, BaseException], None]

    def reserve_actor_id(self) -> int:
        """A fresh actor id, for a child whose incarnations will all bear it."""
        return next(self._ids)

    async def spawn_incarnation(
        self,
        target: type | str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        actor_id: int,
        name: str,
        sandbox: SandboxArg | None,
        options: SpawnOptions | None,
        template_scope: Hashable | None,
    ) -> ActorRef:
        """Start one incarnation of a supervised child under ``actor_id``,
        forked from the template of ``template_scope`` (the child's own), or as
        ``options`` say when None."""
        return await self._spawn(
            SpawnRequest(
                target,
                tuple(args),
                dict(kwargs),
                name=name,
                sandbox=sandbox,
                options=options,
                actor_id=actor_id,
                template_scope=False if template_scope is None else template_scope,
            )
        )

    def incarnation(self, actor_id: int) -> IncarnationView | None:
        """The latest incarnation under ``actor_id`` (a failed start included)."""
        record = self._records.get(actor_id)
        runtime: Runtime = self  # type: ignore[assignment]  # only Runtime mixes this in
        return None if record is None else IncarnationView(runtime, record)

    def hold_calls(self, actor_id: int, holder: CallHolder) -> None:
        """Have the router offer ``holder`` the actor-to-actor frames for
        ``actor_id`` while no incarnation runs, and tell it when one is READY."""
        self._holds[actor_id] = holder

    def release_calls(self, actor_id: int) -> None:
        self._holds.pop(actor_id, None)

    def forward_held(
        self, caller: Any, kind: Kind, call_id: int, actor_id: int, frame: bytes, fds: list[int]
    ) -> None:
        """Route a frame a holder kept, unless its caller (a record) is gone."""
        record = self._records.get(caller.id)
        if record is None or record is not caller or record.state != "running":
            forward_fds(fds, None)  # closes them
            return
        self._forward(record, kind, call_id, actor_id, frame, fds)

    def answer_with_error(
        self, caller_id: int, call_id: int, actor_id: int, error: BaseException
    ) -> None:
        self._send_error_to(caller_id, call_id, actor_id, error)

    def discard_fds(self, fds: list[int]) -> None:
        forward_fds(fds, None)  # closes them

    async def start_service(self, service: Callable[..., Awaitable[Any]]) -> Any:
        """Run ``service`` in the runtime's task group (``TaskGroup.start``)."""
        return await self._tg.start(service)

    def before_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._before_close.append(callback)

    def release_template(self, scope: Hashable) -> None:
        """Shut down the templates scoped to ``scope`` (their owner is done)."""
        self._forks.release(scope)
