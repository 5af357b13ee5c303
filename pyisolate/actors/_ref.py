"""ActorRef: the caller's handle on an actor.

A reference behaves like the object it stands for: ``await ref.inc(2)`` calls
``inc`` in the actor; a generator method returns a stream to ``async for``
over. The explicit forms ``call``, ``cast`` and ``stream`` take options
(``timeout=``, ``window=``).

References are values: they can be sent inside messages to other actors,
which can call them too. A reference names the actor by id, so it stays valid
when a supervisor restarts the actor behind it. The id is not what gives the
right to call: a reference travels with the actor's capability token (an
unguessable secret the host made), and an actor may address only actors whose
token it was given (see ``_capabilities``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import msgpack

from .._wire import DecodeContext, EncodeContext, default_registry
from ._actor import STREAMING

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from ._calls import CallTable, RemoteStream

__all__ = ["ActorRef", "RemoteMethod"]

EXT_ACTOR_REF = 3
DEFAULT_WINDOW = 16


class Endpoint(Protocol):
    """What a reference needs from the side of the wire it lives on."""

    calls: CallTable

    def check_callable(self, actor_id: int, name: str) -> None: ...

    async def stop_actor(self, actor_id: int, timeout: float | None) -> None: ...

    def kill_actor(self, actor_id: int) -> None: ...

    def make_ref(
        self,
        actor_id: int,
        name: str,
        methods: dict[str, str] | None,
        token: bytes = b"",
        source: int = 0,
    ) -> ActorRef: ...

    def ref_token(self, actor_id: int, to_peer: int) -> bytes: ...


class ActorRef:
    """A handle on an actor; obtain one from ``Runtime.spawn``.

    ``await ref.method(*args, **kwargs)`` and ``ref.call("method", ...)`` call;
    ``await ref.cast("method", ...)`` sends without waiting for a reply;
    ``ref.stream("method", ...)`` (or calling a generator method) streams.
    """

    __slots__ = ("_endpoint", "_methods", "default_timeout", "id", "name")

    def __init__(
        self,
        endpoint: Endpoint,
        actor_id: int,
        name: str,
        methods: dict[str, str] | None = None,
        default_timeout: float | None = None,
    ) -> None:
        self._endpoint = endpoint
        self.id = actor_id
        self.name = name
        self._methods = methods
        self.default_timeout = default_timeout

    def __repr__(self) -> str:
        return f"<ActorRef {self.name!r} id={self.id}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ActorRef)
            and other.id == self.id
            and other._endpoint is self._endpoint
        )

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def methods(self) -> dict[str, str]:
        """The actor's remotely callable methods and their kinds (empty if unknown)."""
        return dict(self._methods or {})

    def __getattr__(self, method: str) -> RemoteMethod:
        if method.startswith("_"):
            raise AttributeError(method)
        if self._methods is not None and method not in self._methods:
            raise AttributeError(f"actor {self.name!r} has no public method {method!r}")
        return RemoteMethod(self, method)

    async def call(
        self, method: str, /, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        """Call ``method`` and return its result.

        ``timeout`` (seconds) raises the builtin TimeoutError and cancels the
        remote work. Cancelling the caller cancels the remote method too.
        """
        self._endpoint.check_callable(self.id, self.name)
        return await self._endpoint.calls.call(
            self.id,
            self.name,
            method,
            args,
            kwargs,
            timeout if timeout is not None else self.default_timeout,
        )

    async def cast(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a call that gets no reply; errors in the actor are only logged there."""
        self._endpoint.check_callable(self.id, self.name)
        self._endpoint.calls.cast(self.id, method, args, kwargs)

    def stream(
        self,
        method: str,
        /,
        *args: Any,
        window: int = DEFAULT_WINDOW,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> RemoteStream:
        """Iterate a remote (async) generator.

        At most ``window`` items are in flight: the generator is paused until the
        consumer catches up. ``timeout`` bounds the wait for each item.
        """
        self._endpoint.check_callable(self.id, self.name)
        return self._endpoint.calls.open_stream(
            self.id,
            self.name,
            method,
            args,
            kwargs,
            window,
            timeout if timeout is not None else self.default_timeout,
        )

    async def stop(self, timeout: float | None = None) -> None:
        """Stop the actor gracefully (its ``on_stop`` runs); kill it if it has not
        exited after ``timeout`` seconds. Further calls raise ActorClosedError."""
        await self._endpoint.stop_actor(self.id, timeout)

    def kill(self) -> None:
        """Kill the actor's process at once (SIGKILL)."""
        self._endpoint.kill_actor(self.id)


class RemoteMethod:
    """``ref.method``: call it, or use ``.call(timeout=...)``, ``.cast()``, ``.stream()``."""

    __slots__ = ("_method", "_ref")

    def __init__(self, ref: ActorRef, method: str) -> None:
        self._ref = ref
        self._method = method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        methods = self._ref._methods
        if methods is not None and methods.get(self._method) in STREAMING:
            return self._ref.stream(self._method, *args, **kwargs)
        return self._ref.call(self._method, *args, **kwargs)

    def call(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> Awaitable[Any]:
        return self._ref.call(self._method, *args, timeout=timeout, **kwargs)

    def cast(self, *args: Any, **kwargs: Any) -> Awaitable[None]:
        return self._ref.cast(self._method, *args, **kwargs)

    def stream(
        self, *args: Any, window: int = DEFAULT_WINDOW, timeout: float | None = None, **kwargs: Any
    ) -> RemoteStream:
        return self._ref.stream(self._method, *args, window=window, timeout=timeout, **kwargs)

    def __repr__(self) -> str:
        return f"<RemoteMethod {self._ref.name}.{self._method}>"


def _encode_ref(ref: ActorRef, ctx: EncodeContext) -> bytes:
    methods = ref._methods or {}
    # Sending a reference is granting it: the endpoint hands out the token
    # (and, on the host, records that ``ctx.peer`` now holds it).
    token = ctx.endpoint.ref_token(ref.id, ctx.peer) if ctx.endpoint is not None else b""
    return msgpack.packb([ref.id, ref.name, list(methods.items()), token])  # type: ignore[no-any-return]


def _decode_ref(payload: bytes, ctx: DecodeContext) -> ActorRef:
    actor_id, name, methods, token = msgpack.unpackb(
        payload, max_array_len=100_000, max_bin_len=64, max_str_len=4096
    )
    if (
        type(actor_id) is not int
        or actor_id < 1
        or not isinstance(name, str)
        or not isinstance(token, bytes)
    ):
        raise ValueError("malformed actor reference")
    table = {str(k): str(v) for k, v in methods}
    if ctx.endpoint is None:
        raise ValueError("actor reference received where none can be used")
    ref: ActorRef = ctx.endpoint.make_ref(actor_id, name, table, token, ctx.peer)
    return ref


default_registry.register(ActorRef, EXT_ACTOR_REF, _encode_ref, _decode_ref)
