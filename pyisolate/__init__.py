"""pyisolate: an actor runtime for Python.

Actors are objects that live in their own process (optionally in a bubblewrap
sandbox and their own virtual environment) and answer messages sent over
ZeroMQ as msgpack envelopes; tensors move out of band. See README.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

if TYPE_CHECKING:
    from ._wire import Limits, register_type
    from .actors import (
        Actor,
        ActorRef,
        BlockingActorRef,
        BlockingRuntime,
        RemoteMethod,
        RemoteStream,
        Runtime,
        SpawnOptions,
        exit_actor,
    )
    from .sandbox import ResourceLimits, SandboxMode, SandboxPolicy
    from .supervision import (
        BRUTAL_KILL,
        Backoff,
        BlockingSupervisor,
        ChildCounts,
        ChildInfo,
        ChildSpec,
        Heartbeat,
        Restart,
        Strategy,
        SupervisedRef,
        Supervisor,
        SupervisorHandle,
        SupervisorStats,
        idempotent,
    )

from .errors import (
    ActorClosedError,
    ActorDiedError,
    ActorError,
    ActorStartError,
    MessageTooLargeError,
    ProtocolError,
    PyisolateError,
    RemoteError,
    RemoteTraceback,
    RestartIntensityError,
    SandboxError,
    SandboxUnavailableError,
    SupervisorError,
    TransportError,
)

__version__ = "0.1.0"

__all__ = [
    "BRUTAL_KILL",
    "Actor",
    "ActorClosedError",
    "ActorDiedError",
    "ActorError",
    "ActorRef",
    "ActorStartError",
    "Backoff",
    "BlockingActorRef",
    "BlockingRuntime",
    "BlockingSupervisor",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "Heartbeat",
    "Limits",
    "MessageTooLargeError",
    "ProtocolError",
    "PyisolateError",
    "RemoteError",
    "RemoteMethod",
    "RemoteStream",
    "RemoteTraceback",
    "ResourceLimits",
    "Restart",
    "RestartIntensityError",
    "Runtime",
    "SandboxError",
    "SandboxMode",
    "SandboxPolicy",
    "SandboxUnavailableError",
    "SpawnOptions",
    "Strategy",
    "SupervisedRef",
    "Supervisor",
    "SupervisorError",
    "SupervisorHandle",
    "SupervisorStats",
    "TransportError",
    "exit_actor",
    "idempotent",
    "register_type",
]

# Heavier parts load on first use (see pyisolate.actors): ``import pyisolate``
# and an actor process's start-up stay cheap.
_LAZY = {
    "BlockingSupervisor": ".supervision",
    "Actor": ".actors",
    "ActorRef": ".actors",
    "BRUTAL_KILL": ".supervision",
    "Backoff": ".supervision",
    "BlockingActorRef": ".actors",
    "BlockingRuntime": ".actors",
    "ChildCounts": ".supervision",
    "ChildInfo": ".supervision",
    "ChildSpec": ".supervision",
    "Heartbeat": ".supervision",
    "Limits": "._wire",
    "RemoteMethod": ".actors",
    "RemoteStream": ".actors",
    "ResourceLimits": ".sandbox",
    "Restart": ".supervision",
    "Runtime": ".actors",
    "SandboxMode": ".sandbox",
    "SandboxPolicy": ".sandbox",
    "SpawnOptions": ".actors",
    "Strategy": ".supervision",
    "SupervisedRef": ".supervision",
    "Supervisor": ".supervision",
    "SupervisorHandle": ".supervision",
    "SupervisorStats": ".supervision",
    "exit_actor": ".actors",
    "idempotent": ".supervision",
    "register_type": "._wire",
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
