"""What a supervision tree looks like: frozen specs, no behaviour.

Kept apart from the running supervisor (``_supervisor``) so that a tree can be
built, compared and reused without a runtime, and so that the names a user
writes (``Supervisor``, ``ChildSpec``, ``Strategy``, ``Restart``) do not pull
in the machinery.

The vocabulary is Erlang/OTP's, taken whole:

* strategy: which children restart when one fails (``ONE_FOR_ONE`` just it,
  ``ONE_FOR_ALL`` all of them, ``REST_FOR_ONE`` it and those started after it);
* restart type: ``PERMANENT`` always restarts, ``TRANSIENT`` only after an
  abnormal exit, ``TEMPORARY`` never;
* intensity / period: more than ``intensity`` restarts within ``period``
  seconds and the supervisor stops all its children and fails upward;
* shutdown: seconds of grace before a stopping child is killed, or
  ``"brutal_kill"``; ``None`` waits without limit (the default for nested
  supervisors, which stop their own children first).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import attrs

from ._options import SpawnOptions

__all__ = [
    "BRUTAL_KILL",
    "Backoff",
    "ChildSpec",
    "Heartbeat",
    "Restart",
    "Strategy",
    "Supervisor",
    "idempotent",
    "idempotent_methods",
]

BRUTAL_KILL = "brutal_kill"
Shutdown = float | Literal["brutal_kill"] | None

_F = TypeVar("_F", bound=Callable[..., Any])
_IDEMPOTENT_ATTR = "__pyisolate_idempotent__"


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them fails."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class Restart(enum.Enum):
    """When a child that exited is started again."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


def idempotent(fn: _F) -> _F:
    """Mark an actor method as safe to run twice.

    A call through a supervised reference that fails because the actor died
    mid-call is then sent again to the next incarnation (within the call's
    timeout). Nothing else is ever retried: the caller cannot know whether a
    non-idempotent call took effect before the crash.
    """
    setattr(fn, _IDEMPOTENT_ATTR, True)
    return fn


def idempotent_methods(target: object) -> frozenset[str]:
    """Names of the methods of class ``target`` marked with :func:`idempotent`."""
    if not isinstance(target, type):
        return frozenset()
    return frozenset(
        name
        for name in dir(target)
        if not name.startswith("_")
        and getattr(getattr(target, name, None), _IDEMPOTENT_ATTR, False)
    )


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


@attrs.frozen
class Heartbeat:
    """Hang detection: the supervisor pings the actor's event loop every
    ``interval`` seconds; ``tolerance`` consecutive pings unanswered within
    ``timeout`` seconds and the actor is killed and handled as a crash.

    A ping is answered by the actor's loop thread, so a method blocked on a
    worker thread does not count as a hang; a deadlocked loop, a SIGSTOPped
    process or C code holding the GIL does.
    """

    interval: float = attrs.field(default=1.0, validator=_positive)
    timeout: float = attrs.field(default=2.0, validator=_positive)
    tolerance: int = attrs.field(default=3, validator=_positive)


@attrs.frozen
class Backoff:
    """Delay between attempts to restart a child whose start keeps failing.

    The n-th consecutive failed start waits ``minimum * 2**(n-1)`` seconds, at
    most ``maximum``, stretched by up to ``jitter`` (a fraction) at random so
    that many children do not retry in lock step. Every attempt still counts
    toward the supervisor's restart intensity.
    """

    minimum: float = attrs.field(default=0.05, validator=_positive)
    maximum: float = attrs.field(default=2.0, validator=_positive)
    jitter: float = 0.1

    def delay(self, failures: int, rand: float) -> float:
        """The wait before the next attempt after ``failures`` failed starts."""
        if failures <= 0:
            return 0.0
        base = min(self.maximum, self.minimum * 2.0 ** (failures - 1))
        return base * (1.0 + self.jitter * rand)


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
    for actors and to no limit for nested supervisors. ``heartbeat`` overrides
    the supervisor's. ``options`` and ``sandbox`` go to ``Runtime.spawn``
    (default: the runtime's). ``idempotent`` names methods that may be retried after a
    crash, in addition to those marked with :func:`idempotent`. ``template``
    forks the actor from a warm template process (see ``_template``): a
    restart then costs a fork and the constructor, not a Python start-up.
    Each supervised child gets a template (and so a sandbox) of its own, so
    isolation between children is the same as with cold starts; the price is
    one idle template process per child.
    """

    id: str
    target: type | str | Supervisor
    args: tuple[Any, ...] = attrs.field(default=(), converter=tuple)
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

    ``heartbeat`` applies to every actor child that does not set its own;
    ``None`` turns hang detection off. ``name`` prefixes the children's actor
    names (``"name/child"``); top-level children are named by their id alone.
    """

    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = 3
    period: float = attrs.field(default=5.0, validator=_positive)
    children: tuple[ChildSpec, ...] = attrs.field(default=(), converter=tuple)
    heartbeat: Heartbeat | None = attrs.Factory(Heartbeat)
    name: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.intensity < 0:
            raise ValueError("intensity must be >= 0")
        ids = [c.id for c in self.children]
        if len(ids) != len(set(ids)):
            raise ValueError(f"duplicate child ids in {ids}")
