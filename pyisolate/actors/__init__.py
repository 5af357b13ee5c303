"""Actors: the Actor base class, references, the Runtime that spawns them."""

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
