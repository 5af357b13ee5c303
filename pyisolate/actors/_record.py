"""The host's record of one actor: its process, connection and state.

States: starting -> running -> stopping -> stopped, or dead (crashed, killed,
cut off). The record also knows which calls other actors have pending on it,
so that its death can answer them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import attrs

from ..errors import ActorClosedError, ActorDiedError

if TYPE_CHECKING:
    import socket

    from ._options import SpawnOptions
    from ._process import ActorProcess
    from ._ref import ActorRef

__all__ = ["_Record"]


@attrs.define(eq=False)
class _Record:
    """The host's view of one actor."""

    id: int
    name: str
    token: bytes
    options: SpawnOptions
    init_body: bytes
    init_nfds: int = 0
    process: ActorProcess | None = None
    routing: bytes | None = None
    state: str = "starting"  # starting -> running -> stopping -> stopped | dead
    ready: anyio.Event = attrs.Factory(anyio.Event)
    start_error: BaseException | None = None
    ref: ActorRef | None = None
    death: BaseException | None = None
    # (caller id, call id) of forwarded calls this actor has not answered yet.
    inbound: set[tuple[int, int]] = attrs.Factory(set)
    # The host's end of the actor's side channel (credentials, tensor fds).
    channel: socket.socket | None = None
    isolation: str = "none"
    disconnected: bool = False

    def closed_error(self) -> BaseException:
        if self.state in ("stopping", "stopped"):
            return ActorClosedError(f"actor {self.name!r} has stopped", actor=self.name)
        if self.death is not None:
            return _copy_error(self.death)
        return ActorClosedError(f"actor {self.name!r} is not running", actor=self.name)


def _copy_error(exc: BaseException) -> BaseException:
    if isinstance(exc, ActorDiedError):
        return ActorDiedError(str(exc), actor=exc.actor, exitcode=exc.exitcode)
    return type(exc)(*exc.args)
