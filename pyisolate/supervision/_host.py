"""The narrow interface a supervisor drives its runtime through.

Supervision sits a layer above the actors: it imports their public names,
and they never import it. What it needs from a runtime beyond a public
:class:`~pyisolate.actors.Runtime`'s API is listed here, as protocols the
runtime implements (``Runtime`` does, in the section of that name at the end
of its class): spawn an incarnation under a fixed actor id, look the current
incarnation up, a routing hook for the calls held while a child restarts, a
place to run watchers, a say in the runtime's shutdown. Anything that
implements :class:`SupervisorHost` (a runtime on another node, a fake in a
test) can host supervisors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..actors import ActorRef, Endpoint, SpawnOptions

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable, Mapping

    from .._wire import Kind
    from ..actors import Runtime
    from ._held_calls import HeldCalls

__all__ = ["Incarnation", "SupervisorHost"]


class Incarnation(Protocol):
    """One incarnation of an actor (one process under its actor id), as a
    supervisor watches and stops it. A handle on that incarnation alone: a
    restart under the same id is another one."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> str:
        """``starting``, ``running``, ``stopping``, ``stopped`` or ``dead``."""

    @property
    def connected(self) -> bool:
        """Running with its connection up: frames sent to it now are delivered."""

    @property
    def death(self) -> BaseException | None:
        """What it died of, once dead (None after a stop)."""

    @property
    def returncode(self) -> int | None: ...

    async def wait_exited(self) -> None:
        """Return once the process is gone and the runtime has handled its exit."""

    async def ping(self, timeout: float) -> None:
        """Round-trip a heartbeat through its event loop: TimeoutError if not
        answered in time; ActorError if it is not running."""

    async def stop(self, timeout: float) -> None:
        """Stop it gracefully, killing it after ``timeout`` seconds."""

    async def brutal_kill(self) -> None:
        """Kill it at once, as a stop (its exit is normal); wait for the exit
        as long as the kill takes to reach its whole sandbox."""

    def kill(self, cause: BaseException) -> None:
        """Kill it at once as dead of ``cause`` (it missed its heartbeats)."""


class SupervisorHost(Endpoint, Protocol):
    """A runtime as a supervisor uses it: an Endpoint (supervised references
    call through it) and the hooks below. For supervision only: applications
    use ``spawn`` and ``supervise``."""

    def reserve_actor_id(self) -> int:
        """A fresh actor id, which every incarnation of one child will bear
        (references, and the child's own template, are keyed by it)."""

    async def spawn_incarnation(
        self,
        target: type | str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        actor_id: int,
        name: str,
        sandbox: Any,
        options: SpawnOptions | None,
        template_scope: Hashable | None,
    ) -> ActorRef:
        """Start one incarnation under ``actor_id``, as ``Runtime.spawn``
        would; forked from the template of ``template_scope`` (a child's
        own), or as the options say when None."""

    def incarnation(self, actor_id: int) -> Incarnation | None:
        """The latest incarnation under ``actor_id`` (a failed start
        included); None if it never had one."""

    def hold_calls(self, actor_id: int, holder: HeldCalls) -> None:
        """Route actor-to-actor calls to ``actor_id`` through ``holder`` while
        no incarnation runs: the router offers each to ``holder.offer`` and
        calls ``holder.deliver`` when the next incarnation is ready."""

    def release_calls(self, actor_id: int) -> None:
        """Undo :meth:`hold_calls`: the child will not run again."""

    def forward_held(
        self, caller: Any, kind: Kind, call_id: int, actor_id: int, frame: bytes, fds: list[int]
    ) -> None:
        """Route a held frame as if it had just arrived from ``caller`` (the
        sender as the router passed it to ``offer``); dropped, its fds
        closed, if that caller is gone."""

    def answer_with_error(
        self, caller_id: int, call_id: int, actor_id: int, error: BaseException
    ) -> None:
        """Fail call ``call_id`` of actor ``caller_id`` on ``actor_id`` with ``error``."""

    def discard_fds(self, fds: list[int]) -> None:
        """Close file descriptors that came with a frame that will not be sent."""

    async def start_service(self, service: Callable[..., Awaitable[Any]]) -> Any:
        """Run ``service`` in the runtime's task group, as anyio's
        ``TaskGroup.start`` does (the value it reports started is returned);
        it is cancelled when the runtime closes."""

    def before_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await ``callback`` when the runtime closes, before its actors stop
        (last registered, first called): a supervisor left running would
        restart them."""

    def release_template(self, scope: Hashable) -> None:
        """Shut down the templates of ``scope``: their owner needs them no more."""


if TYPE_CHECKING:

    def _a_runtime_is_a_host(rt: Runtime) -> SupervisorHost:
        return rt  # mypy checks that Runtime implements the protocol
