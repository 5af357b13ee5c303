"""References that follow a supervised child across restarts.

A restarted child keeps its actor id, so a plain :class:`ActorRef` (one held
by another actor included) already reaches the new incarnation. What this
subclass adds, on the host, is patience: a call made while the child is down
or restarting waits for the next incarnation, up to the call's timeout,
instead of failing at once. A call in flight when the child died fails with
ActorDiedError (at most once); only methods marked idempotent are sent again.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.lowlevel

from ..actors import DEFAULT_WINDOW, ActorRef
from ..errors import ActorDiedError

if TYPE_CHECKING:
    from ..actors import Endpoint, RemoteStream

__all__ = ["SupervisedRef"]


class ChildSlot(Protocol):
    """What a supervised reference needs from its supervisor's child slot."""

    idempotent: frozenset[str]
    incarnation: int

    async def wait_past(self, incarnation: int, deadline: float) -> None:
        """Return once the supervisor has handled the end of ``incarnation``."""

    async def wait_up(self, deadline: float) -> None:
        """Return once an incarnation runs; TimeoutError past ``deadline``;
        ActorClosedError if the child will not run again."""


def _deadline(timeout: float | None) -> float:
    return math.inf if timeout is None else anyio.current_time() + timeout


def _remaining(deadline: float) -> float | None:
    if deadline == math.inf:
        return None
    return max(0.0, deadline - anyio.current_time())


class SupervisedRef(ActorRef):
    """An :class:`ActorRef` from ``Supervisor.ref(child_id)``; see the module doc."""

    __slots__ = ("_slot",)

    def __init__(
        self,
        endpoint: Endpoint,
        actor_id: int,
        name: str,
        methods: dict[str, str] | None,
        default_timeout: float | None,
        slot: ChildSlot,
    ) -> None:
        super().__init__(endpoint, actor_id, name, methods, default_timeout)
        self._slot = slot

    def __repr__(self) -> str:
        return f"<SupervisedRef {self.name!r} id={self.id}>"

    async def call(
        self, method: str, /, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        deadline = _deadline(timeout if timeout is not None else self.default_timeout)
        retry = method in self._slot.idempotent
        while True:
            await self._slot.wait_up(deadline)
            incarnation = self._slot.incarnation
            remaining = _remaining(deadline)
            try:
                return await self._endpoint.calls.call(
                    self.id,
                    self.name,
                    method,
                    args,
                    kwargs,
                    math.inf if remaining is None else remaining,
                )
            except ActorDiedError:
                # The send itself may fail at once (the peer's connection is
                # gone): checkpoint, or a caller looping on errors starves the
                # task that will notice the death.
                await anyio.lowlevel.checkpoint()
                if not retry or anyio.current_time() >= deadline:
                    raise
            # Retry on the next incarnation, not on the one that just died.
            await self._slot.wait_past(incarnation, deadline)

    async def cast(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        await self._slot.wait_up(_deadline(self.default_timeout))
        self._endpoint.calls.cast(self.id, method, args, kwargs)

    def stream(
        self,
        method: str,
        /,
        *args: Any,
        window: int = DEFAULT_WINDOW,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Like :meth:`ActorRef.stream`; opening waits for a running incarnation.
        A stream is never resumed on a new incarnation: it fails with the death."""
        if window < 1:
            raise ValueError("stream window must be at least 1")
        timeout = timeout if timeout is not None else self.default_timeout
        return _DeferredStream(self, method, args, kwargs, window, timeout)


class _DeferredStream:
    """Opens the remote stream on first use, once the child runs."""

    def __init__(
        self,
        ref: SupervisedRef,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        window: int,
        timeout: float | None,
    ) -> None:
        self._ref = ref
        self._open_args = (method, args, kwargs, window, timeout)
        self._stream: RemoteStream | None = None
        self._closed = False

    def __aiter__(self) -> _DeferredStream:
        return self

    async def __anext__(self) -> Any:
        if self._closed:
            raise StopAsyncIteration
        if self._stream is None:
            method, args, kwargs, window, timeout = self._open_args
            await self._ref._slot.wait_up(_deadline(timeout))
            ref = self._ref
            self._stream = ref._endpoint.calls.open_stream(
                ref.id, ref.name, method, args, kwargs, window, timeout
            )
        return await self._stream.__anext__()

    async def aclose(self) -> None:
        self._closed = True
        if self._stream is not None:
            await self._stream.aclose()

    async def __aenter__(self) -> _DeferredStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
