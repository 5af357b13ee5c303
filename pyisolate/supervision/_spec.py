"""What a supervision tree looks like: frozen specs, built and compared
without a runtime.

A :class:`Supervisor` spec starts itself on a runtime: ``Runtime.supervise``
and ``BlockingRuntime.supervise`` hand the spec their runtime
(:meth:`Supervisor.start`, :meth:`Supervisor.start_blocking`), so the
runtime never imports this package. The running machinery is imported only
then: writing a spec costs ``attrs``, not the supervisor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ._policy import BRUTAL_KILL, Backoff, Heartbeat, Restart, Shutdown, Strategy, positive

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from ..actors import BlockingRuntime, SpawnOptions
    from ._blocking import BlockingSupervisor
    from ._handle import SupervisorHandle
    from ._host import SupervisorHost

__all__ = ["ChildSpec", "Supervisor"]


def _args(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(values)  # a named converter: attrs' typing of ``tuple`` is generic


def _children(values: Iterable[ChildSpec]) -> tuple[ChildSpec, ...]:
    return tuple(values)


def _check_shutdown(_inst: object, _attr: attrs.Attribute[Any], value: Shutdown) -> None:
    if value is None or value == BRUTAL_KILL:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"shutdown must be seconds >= 0, 'brutal_kill' or None, not {value!r}")


@attrs.frozen
class ChildSpec:
    """One child of a supervisor: an actor class (or ``"module:Class"``) with
    its arguments, or a nested :class:`Supervisor`.

    ``id`` names the child within its supervisor. ``shutdown`` defaults to 5 s
    for actors and to no limit for nested supervisors (they stop their own
    children first, by those children's specs). ``heartbeat`` overrides the
    supervisor's. ``options`` and ``sandbox`` go to ``Runtime.spawn``
    (default: the runtime's). ``idempotent`` names methods that may be retried
    after a crash, in addition to those marked with :func:`idempotent`.
    ``template`` forks the actor from a warm template process (as
    ``SpawnOptions(template=True)`` does): a restart then costs a fork and
    the constructor, not a Python start-up. Each supervised child gets a
    template (and so a sandbox) of its own, so isolation between children is
    the same as with cold starts; the price is one idle template process per
    child.
    """

    id: str
    target: type | str | Supervisor
    args: tuple[Any, ...] = attrs.field(default=(), converter=_args)
    kwargs: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    restart: Restart = Restart.PERMANENT
    shutdown: Shutdown = attrs.field(
        default=attrs.Factory(
            lambda self: None if isinstance(self.target, Supervisor) else 5.0, takes_self=True
        ),
        validator=_check_shutdown,
    )
    options: SpawnOptions | None = None
    sandbox: Any = None
    heartbeat: Heartbeat | None = None
    backoff: Backoff | None = None
    idempotent: frozenset[str] = attrs.field(factory=frozenset, converter=frozenset)
    template: bool = True

    @property
    def is_supervisor(self) -> bool:
        return isinstance(self.target, Supervisor)


@attrs.frozen
class Supervisor:
    """A supervisor's specification; start it with ``await rt.supervise(spec)``.

    ``intensity`` / ``period``: more than ``intensity`` restarts within
    ``period`` seconds and the supervisor stops all its children and fails
    upward (RestartIntensityError). ``heartbeat`` applies to every actor child
    that does not set its own; ``None`` turns hang detection off. ``name``
    prefixes the children's actor names (``"name/child"``); top-level
    children are named by their id alone.
    """

    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = 3
    period: float = attrs.field(default=5.0, validator=positive)
    children: tuple[ChildSpec, ...] = attrs.field(default=(), converter=_children)
    heartbeat: Heartbeat | None = attrs.Factory(Heartbeat)
    name: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.intensity < 0:
            raise ValueError("intensity must be >= 0")
        ids = [c.id for c in self.children]
        if len(ids) != len(set(ids)):
            raise ValueError(f"duplicate child ids in {ids}")

    async def start(self, runtime: SupervisorHost) -> SupervisorHandle:
        """Start this tree on ``runtime`` (what ``Runtime.supervise`` calls);
        return its handle once every child runs."""
        from ._handle import SupervisorHandle

        return await SupervisorHandle.start_tree(runtime, self)

    def start_blocking(self, runtime: BlockingRuntime) -> BlockingSupervisor:
        """Start this tree from synchronous code (what
        ``BlockingRuntime.supervise`` calls); return its blocking handle."""
        from ._blocking import BlockingSupervisor

        handle = runtime.run_async(runtime.runtime.supervise, self)
        return BlockingSupervisor(runtime, handle)
