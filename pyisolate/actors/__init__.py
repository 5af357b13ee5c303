"""Actors: the Actor base class, references, the Runtime that spawns them.

Names are imported on first use: an actor process imports only what serving
needs, which keeps its start-up close to a bare interpreter's. Supervision
trees, built on these names, are in :mod:`pyisolate.supervision`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._actor import Actor
    from ._blocking import BlockingActorRef, BlockingRuntime
    from ._calls import RemoteStream
    from ._exit import exit_actor
    from ._options import SpawnOptions
    from ._ref import DEFAULT_WINDOW, ActorRef, Endpoint, RemoteMethod
    from ._runtime import Runtime

__all__ = [
    "DEFAULT_WINDOW",
    "Actor",
    "ActorRef",
    "BlockingActorRef",
    "BlockingRuntime",
    "Endpoint",
    "RemoteMethod",
    "RemoteStream",
    "Runtime",
    "SpawnOptions",
    "exit_actor",
]

_WHERE = {
    "DEFAULT_WINDOW": "._ref",
    "Actor": "._actor",
    "ActorRef": "._ref",
    "BlockingActorRef": "._blocking",
    "BlockingRuntime": "._blocking",
    "Endpoint": "._ref",
    "RemoteMethod": "._ref",
    "RemoteStream": "._calls",
    "Runtime": "._runtime",
    "SpawnOptions": "._options",
    "exit_actor": "._exit",
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
