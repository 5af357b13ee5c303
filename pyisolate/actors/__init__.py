"""Actors: the Actor base class, references, the Runtime that spawns them.

Names are imported on first use: an actor process imports only what serving
needs, which keeps its start-up close to a bare interpreter's.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._actor import Actor
    from ._blocking import BlockingActorRef, BlockingRuntime
    from ._calls import RemoteStream
    from ._options import SpawnOptions
    from ._ref import ActorRef, RemoteMethod
    from ._runtime import Runtime

__all__ = [
    "Actor",
    "ActorRef",
    "BlockingActorRef",
    "BlockingRuntime",
    "RemoteMethod",
    "RemoteStream",
    "Runtime",
    "SpawnOptions",
]

_WHERE = {
    "Actor": "._actor",
    "ActorRef": "._ref",
    "BlockingActorRef": "._blocking",
    "BlockingRuntime": "._blocking",
    "RemoteMethod": "._ref",
    "RemoteStream": "._calls",
    "Runtime": "._runtime",
    "SpawnOptions": "._options",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
