"""Actors: the Actor base class, references, the Runtime that spawns them.

Names are imported on first use: an actor process imports only what serving
needs, which keeps its start-up close to a bare interpreter's. Supervision
trees, built on these names, are in :mod:`pyisolate.supervision`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # for type checkers; at run time, _WHERE
    from ._actor import Actor
    from ._blocking import BlockingActorRef, BlockingRuntime
    from ._calls import RemoteStream
    from ._exit import exit_actor
    from ._launchers import ActorStart, ColdLauncher, Launcher
    from ._options import SpawnOptions, default_compute_threads
    from ._ref import DEFAULT_WINDOW, ActorRef, Endpoint, RemoteMethod
    from ._runtime import Runtime
    from ._spawning import SpawnRequest

# The one map of this facade: each exported name and the module defining it.
_WHERE = {
    "DEFAULT_WINDOW": "._ref",
    "Actor": "._actor",
    "ActorRef": "._ref",
    "ActorStart": "._launchers",
    "BlockingActorRef": "._blocking",
    "BlockingRuntime": "._blocking",
    "ColdLauncher": "._launchers",
    "Endpoint": "._ref",
    "Launcher": "._launchers",
    "RemoteMethod": "._ref",
    "RemoteStream": "._calls",
    "Runtime": "._runtime",
    "SpawnOptions": "._options",
    "SpawnRequest": "._spawning",
    "default_compute_threads": "._options",
    "exit_actor": "._exit",
}

# Kept equal to the map (a test checks): type checkers read only a literal.
__all__ = [
    "DEFAULT_WINDOW",
    "Actor",
    "ActorRef",
    "ActorStart",
    "BlockingActorRef",
    "BlockingRuntime",
    "ColdLauncher",
    "Endpoint",
    "Launcher",
    "RemoteMethod",
    "RemoteStream",
    "Runtime",
    "SpawnOptions",
    "SpawnRequest",
    "default_compute_threads",
    "exit_actor",
]

__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
