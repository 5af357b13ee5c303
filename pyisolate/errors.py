"""Every exception pyisolate raises, in one place.

The tree:

    PyisolateError
    ├── ActorError                  something went wrong with one actor
    │   ├── ActorStartError         the actor never became ready (import error,
    │   │                           constructor raised, bad arguments, sandbox refused)
    │   ├── ActorDiedError          the process ended while a call was pending
    │   ├── ActorClosedError        the actor was stopped; no more calls
    │   └── RemoteError             a non-builtin exception raised inside the actor
    ├── ProtocolError               a peer broke the wire protocol (garbage, oversized
    │                               frames, bad token or version); that peer is cut off
    ├── MessageTooLargeError        a message would exceed the receiver's frame limit;
    │                               refused before sending (also a ValueError)
    ├── TransportError              a tensor could not be moved out of band
    ├── SandboxError                the sandbox could not be set up as asked
    │   └── SandboxUnavailableError REQUIRED isolation is not possible on this machine
    └── SupervisorError             a supervisor could not keep its children running
        └── RestartIntensityError   more restarts than allowed within the period

Builtin exceptions raised inside an actor are *not* wrapped: a ``KeyError``
raised remotely is a ``KeyError`` in the caller, with the remote traceback
attached as its ``__cause__`` (a :class:`RemoteTraceback`, the way
``concurrent.futures`` shows a worker's traceback). Timeouts are the builtin
``TimeoutError``; cancellation is never wrapped.
"""

from __future__ import annotations

__all__ = [
    "ActorClosedError",
    "ActorDiedError",
    "ActorError",
    "ActorStartError",
    "MessageTooLargeError",
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


class PyisolateError(Exception):
    """Base class of every error pyisolate raises itself."""


class ActorError(PyisolateError):
    """An error tied to one actor; ``actor`` names it when known."""

    def __init__(self, message: str, *, actor: str | None = None) -> None:
        super().__init__(message)
        self.actor = actor


class ActorStartError(ActorError):
    """The actor did not start: its module failed to import, its constructor or
    ``on_start`` raised, or its process exited before saying it was ready.

    Raised promptly by ``Runtime.spawn``; the child's traceback is in the message.
    """


class ActorDiedError(ActorError):
    """The actor's process ended while this call was pending.

    ``exitcode`` is the process exit status (negative: killed by that signal).
    """

    def __init__(
        self, message: str, *, actor: str | None = None, exitcode: int | None = None
    ) -> None:
        super().__init__(message, actor=actor)
        self.exitcode = exitcode


class ActorClosedError(ActorError):
    """The actor was stopped (or its runtime closed); it takes no more calls."""


class RemoteError(ActorError):
    """A non-builtin exception raised inside the actor.

    ``type_name`` is the remote exception's qualified type name (``module.Qualname``),
    ``remote_traceback`` the formatted traceback from the actor.
    """

    def __init__(
        self,
        message: str,
        *,
        type_name: str,
        remote_traceback: str = "",
        actor: str | None = None,
    ) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name, actor=actor)
        self.type_name = type_name
        self.remote_message = message
        self.remote_traceback = remote_traceback


class RemoteTraceback(Exception):
    """Carries the remote traceback text; set as ``__cause__`` of a re-raised error
    so Python prints it beneath the local traceback."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class ProtocolError(PyisolateError):
    """A peer sent something the protocol does not allow. The peer is disconnected;
    the host keeps serving everyone else."""


class MessageTooLargeError(PyisolateError, ValueError):
    """A message (arguments, a result, a stream item) would exceed the frame
    limit of the peer that receives it. Raised by the sender, before anything
    is sent, so nobody is cut off; ``size`` and ``limit`` are in bytes. Large
    data belongs in bytes, tensors, arrays or ``OutOfBand`` buffers, which
    move out of band whatever their size."""

    def __init__(self, message: str, *, size: int = 0, limit: int = 0) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class TransportError(PyisolateError):
    """A tensor or buffer could not be exported, imported or released."""


class SandboxError(PyisolateError):
    """The sandbox could not be set up as the policy asks."""


class SandboxUnavailableError(SandboxError):
    """``SandboxMode.REQUIRED`` was asked for but full isolation is not possible here.

    The message says why and how to fix it.
    """


class SupervisorError(PyisolateError):
    """A supervisor failed to start or keep its children."""


class RestartIntensityError(SupervisorError):
    """More restarts than ``intensity`` within ``period`` seconds; the supervisor
    stopped its children and gave up. ``__cause__`` is the last failure."""
