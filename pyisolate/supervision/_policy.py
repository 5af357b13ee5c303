"""The vocabulary of supervision: strategies, restart types, hang detection, backoff.

Erlang/OTP's, taken whole:

* strategy: which children restart when one fails (``ONE_FOR_ONE`` just it,
  ``ONE_FOR_ALL`` all of them, ``REST_FOR_ONE`` it and those started after it);
* restart type: ``PERMANENT`` always restarts, ``TRANSIENT`` only after an
  abnormal exit, ``TEMPORARY`` never;
* shutdown: seconds of grace before a stopping child is killed, or
  ``BRUTAL_KILL``; ``None`` waits without limit.

Plain values, in a module of their own: an actor module marks its methods
:func:`idempotent` with no supervisor machinery imported into the actor's
process, and the running supervisor reads these without importing the specs.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import attrs

__all__ = [
    "BRUTAL_KILL",
    "Backoff",
    "Heartbeat",
    "Restart",
    "Shutdown",
    "Strategy",
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


def positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """attrs validator: the field must be > 0."""
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

    interval: float = attrs.field(default=1.0, validator=positive)
    timeout: float = attrs.field(default=2.0, validator=positive)
    tolerance: int = attrs.field(default=3, validator=positive)


@attrs.frozen
class Backoff:
    """Delay between attempts to restart a child whose start keeps failing.

    The n-th consecutive failed start waits ``minimum * 2**(n-1)`` seconds, at
    most ``maximum``, stretched by up to ``jitter`` (a fraction) at random so
    that many children do not retry in lock step. Every attempt still counts
    toward the supervisor's restart intensity.
    """

    minimum: float = attrs.field(default=0.05, validator=positive)
    maximum: float = attrs.field(default=2.0, validator=positive)
    jitter: float = 0.1

    def delay(self, failures: int, rand: float) -> float:
        """The wait before the next attempt after ``failures`` failed starts."""
        if failures <= 0:
            return 0.0
        base = min(self.maximum, self.minimum * 2.0 ** (failures - 1))
        return base * (1.0 + self.jitter * rand)
