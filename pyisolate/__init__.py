"""pyisolate: an actor runtime for Python.

Actors are objects that live in their own process (optionally in a bubblewrap
sandbox and their own virtual environment) and answer messages sent over
ZeroMQ as msgpack envelopes; tensors move out of band. See README.md.
"""

from __future__ import annotations

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
    "ActorRef",
    "BlockingActorRef",
    "BlockingRuntime",
    "RemoteMethod",
    "RemoteStream",
    "Runtime",
    "SpawnOptions",
    "ActorClosedError",
    "ActorDiedError",
    "ActorError",
    "ActorStartError",
    "ProtocolError",
    "PyisolateError",
    "RemoteError",
    "RemoteTraceback",
    "RestartIntensityError",
    "SandboxError",
    "SandboxUnavailableError",
    "SupervisorError",
    "TransportError",
]
