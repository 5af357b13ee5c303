"""The blocking facade: the async API for plain scripts and notebooks.

``with Runtime.blocking() as rt:`` runs a Runtime on an event loop in a
background thread (an anyio blocking portal) and gives synchronous twins of
its objects: ``ref.inc(2)`` returns the result, generator methods return
ordinary iterators.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._actor import STREAMING
from ._ref import DEFAULT_WINDOW, ActorRef

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._calls import RemoteStream
    from ._hosting import BlockingSupervisable

__all__ = ["BlockingActorRef", "BlockingRuntime"]

_END = object()
_H = TypeVar("_H")


class BlockingRuntime:
    """A Runtime driven from synchronous code. Accepts Runtime's arguments plus
    ``backend`` ("asyncio" or "trio") for the background loop."""

    def __init__(self, *, backend: str = "asyncio", **runtime_kwargs: Any) -> None:
        from ._runtime import Runtime

        self._backend = backend
        self.runtime = Runtime(**runtime_kwargs)
        self._portal_cm: Any = None
        self._rt_cm: Any = None
        self.portal: BlockingPortal | None = None

    def __enter__(self) -> BlockingRuntime:
        self._portal_cm = start_blocking_portal(self._backend)
        self.portal = self._portal_cm.__enter__()
        try:
            self._rt_cm = self.portal.wrap_async_context_manager(self.runtime)
            self._rt_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._rt_cm.__exit__(*exc_info)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.portal is None:
            raise RuntimeError("use 'with Runtime.blocking() as rt:'")
        return self.portal.call(lambda: fn(*args, **kwargs))

    def run_async(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` (async or not) on the runtime's event
        loop and return its result: how blocking twins drive the async API
        (this module's, and pyisolate.supervision's)."""
        return self._call(fn, *args, **kwargs)

    def spawn(self, target: type | str, *args: Any, **kwargs: Any) -> BlockingActorRef:
        """Like ``Runtime.spawn``; returns a :class:`BlockingActorRef`."""
        ref = self._call(self.runtime.spawn, target, *args, **kwargs)
        return BlockingActorRef(self, ref)

    def actors(self) -> list[BlockingActorRef]:
        return [BlockingActorRef(self, r) for r in self.runtime.actors()]

    def supervise(self, spec: BlockingSupervisable[_H]) -> _H:
        """Like ``Runtime.supervise``; returns a :class:`~pyisolate.BlockingSupervisor`."""
        return spec.start_blocking(self)


class BlockingActorRef:
    """Synchronous twin of :class:`ActorRef`. ``.ref`` is the async reference
    (to send to other actors)."""

    def __init__(self, owner: BlockingRuntime, ref: ActorRef) -> None:
        self._owner = owner
        self.ref = ref
        self.name = ref.name

    def __repr__(self) -> str:
        return f"<BlockingActorRef {self.name!r}>"

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)
        getattr(self.ref, method)  # AttributeError for unknown methods, at once
        if self.ref.methods.get(method) in STREAMING:
            return lambda *a, **kw: self.stream(method, *a, **kw)
        return lambda *a, **kw: self.call(method, *a, **kw)

    def call(self, method: str, /, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        return self._owner._call(self.ref.call, method, *args, timeout=timeout, **kwargs)

    def cast(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        self._owner._call(self.ref.cast, method, *args, **kwargs)

    def stream(
        self,
        method: str,
        /,
        *args: Any,
        window: int = DEFAULT_WINDOW,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Iterator[Any]:
        stream: RemoteStream = self._owner._call(
            self.ref.stream, method, *args, window=window, timeout=timeout, **kwargs
        )

        async def next_item() -> Any:
            try:
                return await stream.__anext__()
            except StopAsyncIteration:
                return _END

        def iterate() -> Iterator[Any]:
            try:
                while True:
                    item = self._owner._call(next_item)
                    if item is _END:
                        return
                    yield item
            finally:
                self._owner._call(stream.aclose)

        return iterate()

    def stop(self, timeout: float | None = None) -> None:
        self._owner._call(self.ref.stop, timeout)

    def kill(self) -> None:
        self._owner._call(self.ref.kill)
