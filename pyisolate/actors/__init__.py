"""Actors: the Actor base class, references, the Runtime that spawns them.

Names are imported on first use: an actor process imports only what serving
needs, which keeps its start-up close to a bare interpreter's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._actor import Actor
    from ._blocking import BlockingActorRef, BlockingRuntime
    from ._calls import RemoteStream
    from ._exit import exit_actor
    from ._launchers import ActorStart, ColdLauncher, Launcher
    from ._options import SpawnOptions, default_compute_threads
    from ._ref import ActorRef, RemoteMethod
    from ._runtime import Runtime
    from ._spawning import SpawnRequest
    from ._supblocking import BlockingSupervisor
    from ._supchild import ChildCounts, ChildInfo, SupervisorStats
    from ._supervisor import SupervisorHandle
    from ._supref import SupervisedRef
    from ._supspec import (
        BRUTAL_KILL,
        Backoff,
        ChildSpec,
        Heartbeat,
        Restart,
        Strategy,
        Supervisor,
        idempotent,
    )

__all__ = [
    "BRUTAL_KILL",
    "Actor",
    "ActorRef",
    "ActorStart",
    "Backoff",
    "BlockingActorRef",
    "BlockingRuntime",
    "BlockingSupervisor",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "ColdLauncher",
    "Heartbeat",
    "Launcher",
    "RemoteMethod",
    "RemoteStream",
    "Restart",
    "Runtime",
    "SpawnOptions",
    "SpawnRequest",
    "Strategy",
    "SupervisedRef",
    "Supervisor",
    "SupervisorHandle",
    "SupervisorStats",
    "default_compute_threads",
    "exit_actor",
    "idempotent",
]

_WHERE = {
    "BlockingSupervisor": "._supblocking",
    "Actor": "._actor",
    "ActorStart": "._launchers",
    "ColdLauncher": "._launchers",
    "Launcher": "._launchers",
    "SpawnRequest": "._spawning",
    "ActorRef": "._ref",
    "BRUTAL_KILL": "._supspec",
    "Backoff": "._supspec",
    "BlockingActorRef": "._blocking",
    "BlockingRuntime": "._blocking",
    "ChildCounts": "._supchild",
    "ChildInfo": "._supchild",
    "ChildSpec": "._supspec",
    "Heartbeat": "._supspec",
    "RemoteMethod": "._ref",
    "RemoteStream": "._calls",
    "Restart": "._supspec",
    "Runtime": "._runtime",
    "SpawnOptions": "._options",
    "Strategy": "._supspec",
    "SupervisedRef": "._supref",
    "Supervisor": "._supspec",
    "SupervisorHandle": "._supervisor",
    "SupervisorStats": "._supchild",
    "default_compute_threads": "._options",
    "exit_actor": "._exit",
    "idempotent": "._supspec",
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
