"""The :class:`Actor` base class and the table of its remotely callable methods.

An actor is an ordinary class. Its public methods become remote methods:
``async def`` ones run concurrently on the actor's event loop, plain ``def``
ones one at a time (configurable) on a worker thread so they cannot stall the
loop, and (async) generators become streams. Names starting with ``_`` and the
lifecycle hooks are never callable from outside.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["Actor", "method_table"]

ASYNC, SYNC, ASYNC_GEN, GEN = "async", "sync", "asyncgen", "gen"
STREAMING = (ASYNC_GEN, GEN)

_HOOKS = frozenset({"on_start", "on_stop"})


class Actor:
    """Base class for actors (subclassing it is optional but documents intent).

    Override :meth:`on_start` for set-up that needs the actor's event loop, and
    :meth:`on_stop` for clean-up on a graceful stop. Both may be ``async``.
    An exception escaping ``on_start`` fails the spawn with ActorStartError.

    Inside an actor, ``self.name`` is its name (set before ``on_start``).
    """

    name: str = ""

    def on_start(self) -> Any:
        """Called once after the constructor, inside the actor's event loop."""

    def on_stop(self) -> Any:
        """Called once on a graceful stop, before the process exits."""


def method_table(cls: type) -> dict[str, str]:
    """Map each remotely callable method of ``cls`` to its kind."""
    table: dict[str, str] = {}
    for name in dir(cls):
        if name.startswith("_") or name in _HOOKS:
            continue
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if not callable(attr):
            continue
        table[name] = method_kind(attr)
    return table


def method_kind(fn: Any) -> str:
    if inspect.isasyncgenfunction(fn):
        return ASYNC_GEN
    if inspect.isgeneratorfunction(fn):
        return GEN
    if inspect.iscoroutinefunction(fn):
        return ASYNC
    return SYNC
