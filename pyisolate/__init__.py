"""pyisolate: an actor runtime for Python.

Actors are objects that live in their own process (optionally in a bubblewrap
sandbox and their own virtual environment) and answer messages sent over
ZeroMQ as msgpack envelopes; tensors move out of band. See README.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .actors import (
        Actor,
        ActorRef,
        BlockingActorRef,
        BlockingRuntime,
        RemoteMethod,
        RemoteStream,
        Runtime,
        SpawnOptions,
    )

from .errors import (
    ActorClosedError,
    ActorDiedError,
    ActorError,
    ActorStartError,
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
    "Actor",
    "ActorClosedError",
    "ActorDiedError",
    "ActorError",
    "ActorRef",
    "ActorStartError",
    "BlockingActorRef",
    "BlockingRuntime",
    "ProtocolError",
    "PyisolateError",
    "RemoteError",
    "RemoteMethod",
    "RemoteStream",
    "RemoteTraceback",
    "RestartIntensityError",
    "Runtime",
    "SandboxError",
    "SandboxUnavailableError",
    "SpawnOptions",
    "SupervisorError",
    "TransportError",
]

# Heavier parts load on first use (see pyisolate.actors): ``import pyisolate``
# and an actor process's start-up stay cheap.
_LAZY = {
    "Actor": ".actors",
    "ActorRef": ".actors",
    "BlockingActorRef": ".actors",
    "BlockingRuntime": ".actors",
    "RemoteMethod": ".actors",
    "RemoteStream": ".actors",
    "Runtime": ".actors",
    "SpawnOptions": ".actors",
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
