"""The caller's side of calls, casts and streams; shared by host and actors.

A :class:`CallTable` numbers outgoing calls, parks each caller on its own
event until the reply arrives, and turns a reply, an error or the callee's
death into the caller's result. It knows nothing about sockets: the endpoint
gives it a ``send`` function and feeds it incoming messages with
:meth:`CallTable.dispatch`.

Cancellation: if the waiting caller is cancelled (or its timeout fires) the
table tells the callee with a CANCEL message, so remote work stops too. The
cancellation itself propagates unchanged; a timeout is the builtin
``TimeoutError``.

Streams use credit: the callee may send at most ``window`` items beyond what
the consumer has taken, so a fast producer cannot run ahead without bound.
"""

from __future__ import annotations

import asyncio
import collections
import math
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from .._wire import Kind, exception_from_wire
from ..errors import ProtocolError

__all__ = ["CallTable", "RemoteStream", "on_asyncio"]

SendFn = Callable[[Kind, int, int, Any], None]
"""send(kind, call_id, peer, body) — body ``None`` means no body frame."""

_NO_BODY = None


def on_asyncio() -> bool:
    # A running asyncio loop in this thread means the asyncio backend (anyio no
    # longer ships sniffio, and this is all we need to know).
    return asyncio._get_running_loop() is not None


def _event_factory() -> Callable[[], Any]:
    """asyncio's own Event where the loop is asyncio (a fraction of the cost of
    anyio's wrapper, and anyio's cancel scopes still apply); anyio's elsewhere."""
    return asyncio.Event if on_asyncio() else anyio.Event


def _who(actor: str | None, peer: int) -> str:
    return f"actor {actor!r}" if actor else f"peer {peer}"


class _Pending:
    __slots__ = ("actor", "done", "error", "event", "peer", "value")

    def __init__(self, peer: int, actor: str | None, event: Any) -> None:
        self.peer = peer
        self.actor = actor
        self.event = event
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None

    def resolve(self, value: Any) -> None:
        if not self.done:
            self.done = True
            self.value = value
            self.event.set()

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            self.error = error
            self.event.set()


def _outcome(pending: _Pending) -> Any:
    """The call's value, or raise its error without keeping a reference cycle
    (error -> traceback -> frame -> pending -> error) that would hold the
    call's arguments, tensors and their shared memory until a gc pass."""
    error = pending.error
    if error is None:
        return pending.value
    pending.error = None
    try:
        raise error
    finally:
        del error, pending


class CallTable:
    """Outstanding calls and streams of one endpoint."""

    def __init__(self, send: SendFn) -> None:
        self._send = send
        self._ids = iter(range(1, 2**62))
        self._pending: dict[int, _Pending] = {}
        # Streams are held weakly: a consumer that drops its stream (``break``
        # out of ``async for``) lets it be collected, and its finalizer closes
        # the remote generator.
        self._streams: weakref.WeakValueDictionary[int, RemoteStream] = (
            weakref.WeakValueDictionary()
        )
        # Bound on first use from the event loop (the table may be built on
        # another thread, e.g. by the blocking facade).
        self._loop_thread: int | None = None
        self._call_soon_threadsafe: Callable[[Callable[[], None]], object] | None = None
        self._new_event: Callable[[], Any] | None = None

    def _bind_loop(self) -> None:
        self._loop_thread = threading.get_ident()
        self._new_event = _event_factory()
        if on_asyncio():
            loop = asyncio.get_running_loop()
            self._call_soon_threadsafe = loop.call_soon_threadsafe
        else:
            import trio

            self._call_soon_threadsafe = trio.lowlevel.current_trio_token().run_sync_soon

    def new_event(self) -> Any:
        if self._new_event is None:
            self._bind_loop()
        assert self._new_event is not None
        return self._new_event()

    # -- outgoing ---------------------------------------------------------------

    async def call(
        self,
        peer: int,
        actor: str | None,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        call_id = next(self._ids)
        pending = _Pending(peer, actor, self.new_event())
        # Register before sending: the send drains the socket, and the reply
        # may be dispatched before it returns. An unencodable argument raises
        # TypeError from the send, in the caller, and nothing is left behind.
        self._pending[call_id] = pending
        try:
            self._send(Kind.CALL, call_id, peer, [method, list(args), kwargs])
        except BaseException:
            del self._pending[call_id]
            raise
        try:
            if pending.done:
                pass
            elif timeout is None:
                await pending.event.wait()
            else:
                try:
                    with anyio.fail_after(timeout):
                        await pending.event.wait()
                except TimeoutError:
                    raise TimeoutError(
                        f"{_who(actor, peer)}.{method}() did not answer within {timeout} s "
                        "(the call was cancelled in the actor)"
                    ) from None
        finally:
            if not pending.done:
                pending.done = True
                self._cancel_remote(call_id, peer)
            self._pending.pop(call_id, None)
        return _outcome(pending)

    def cast(self, peer: int, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._send(Kind.CAST, 0, peer, [method, list(args), kwargs])

    def open_stream(
        self,
        peer: int,
        actor: str | None,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        window: int,
        timeout: float | None,
    ) -> RemoteStream:
        if window < 1:
            raise ValueError("stream window must be at least 1")
        call_id = next(self._ids)
        stream = RemoteStream(self, call_id, peer, actor, window, timeout)
        self._streams[call_id] = stream
        try:
            self._send(Kind.STREAM, call_id, peer, [method, list(args), kwargs, window])
        except BaseException:
            self._streams.pop(call_id, None)
            stream._closed = True
            raise
        return stream

    def _cancel_remote(self, call_id: int, peer: int) -> None:
        if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
            # Garbage collection may finalize a stream on another thread; the
            # socket belongs to the loop thread, so send from there.
            if self._call_soon_threadsafe is not None:
                try:
                    self._call_soon_threadsafe(lambda: self._cancel_remote(call_id, peer))
                except RuntimeError:
                    pass  # the loop is closed: the peer is gone with it
            return
        try:
            self._send(Kind.CANCEL, call_id, peer, _NO_BODY)
        except Exception:
            pass  # the peer is gone: nothing left to cancel

    # -- incoming ---------------------------------------------------------------

    def dispatch(
        self, kind: Kind, call_id: int, body: Any, sender: int, actor: str | None = None
    ) -> None:
        """Route a REPLY, ERROR, ITEM, END or PONG from ``sender`` to its caller.

        Unknown ids are answers to calls that were cancelled meanwhile:
        dropped. An answer to a call that went to another peer is a forgery
        (call ids are easy to guess): ProtocolError, and the caller never
        sees it."""
        pending = self._pending.get(call_id)
        if pending is None:
            stream = self._streams.get(call_id)
            if stream is None:
                return
            if stream.peer != sender:
                raise ProtocolError(
                    f"{kind.name} for stream {call_id}, which peer {sender} was not asked for"
                )
            if kind is Kind.ITEM:
                stream._push(body)
            elif kind is Kind.END:
                self._streams.pop(call_id, None)
                stream._finish(None)
            elif kind is Kind.ERROR:
                self._streams.pop(call_id, None)
                stream._finish(exception_from_wire(body, actor=actor))
            else:
                self._streams.pop(call_id, None)
                stream._finish(ProtocolError(f"unexpected {kind.name} on a stream"))
        elif pending.peer != sender:
            raise ProtocolError(
                f"{kind.name} for call {call_id}, which peer {sender} was not asked for"
            )
        elif kind is Kind.REPLY or kind is Kind.PONG:
            pending.resolve(body)
        elif kind is Kind.ERROR:
            pending.fail(exception_from_wire(body, actor=actor))
        else:
            pending.fail(ProtocolError(f"unexpected {kind.name} in reply to a call"))

    def fail_call(self, call_id: int, error: BaseException) -> None:
        pending = self._pending.pop(call_id, None)
        if pending is not None:
            pending.fail(error)
            return
        stream = self._streams.pop(call_id, None)
        if stream is not None:
            stream._finish(error)

    def _all(self) -> list[tuple[int, _Pending | RemoteStream]]:
        return [*self._pending.items(), *self._streams.items()]

    def fail_peer(self, peer: int, make_error: Callable[[], BaseException]) -> None:
        """Fail every call and stream waiting on ``peer`` (it died or was cut off)."""
        for call_id, pending in self._all():
            if pending.peer == peer:
                self.fail_call(call_id, make_error())

    def fail_peer_all(self, make_error: Callable[[], BaseException]) -> None:
        for call_id, _ in self._all():
            self.fail_call(call_id, make_error())

    async def ping(self, peer: int, actor: str | None, timeout: float | None) -> None:
        """Send a heartbeat and wait for the PONG (answered by the actor's loop)."""
        call_id = next(self._ids)
        pending = _Pending(peer, actor, self.new_event())
        self._pending[call_id] = pending
        try:
            self._send(Kind.PING, call_id, peer, _NO_BODY)
            try:
                with anyio.fail_after(timeout if timeout is not None else math.inf):
                    await pending.event.wait()
            except TimeoutError:
                raise TimeoutError(
                    f"{_who(actor, peer)} did not answer a heartbeat within {timeout} s"
                ) from None
        finally:
            self._pending.pop(call_id, None)
        _outcome(pending)

    def pending_count(self, peer: int | None = None) -> int:
        return sum(1 for _, p in self._all() if peer is None or p.peer == peer)


class RemoteStream(AsyncIterator[Any]):
    """The consumer's end of a remote (async) generator.

    Iterate it with ``async for``; leave early with ``break``: the remote
    generator is closed when this object is closed or garbage-collected. Use
    ``async with`` for a deterministic close. ``timeout`` bounds the wait for
    each item.
    """

    def __init__(
        self,
        table: CallTable,
        call_id: int,
        peer: int,
        actor: str | None,
        window: int,
        timeout: float | None,
    ) -> None:
        self._table = table
        self._call_id = call_id
        self.peer = peer
        self._actor = actor
        self._window = window
        self._timeout = timeout
        self._items: collections.deque[Any] = collections.deque()
        self._event = table.new_event()
        self._finished = False
        self._error: BaseException | None = None
        self._consumed_since_credit = 0
        self._closed = False

    # Called by the table on the loop thread.
    def _push(self, item: Any) -> None:
        if len(self._items) >= self._window:
            self._table.fail_call(
                self._call_id, ProtocolError("stream producer exceeded its credit")
            )
            self._table._cancel_remote(self._call_id, self.peer)
            return
        self._items.append(item)
        self._event.set()

    def _finish(self, error: BaseException | None) -> None:
        self._finished = True
        self._error = error
        self._event.set()

    async def __anext__(self) -> Any:
        while not self._items:
            if self._finished:
                self._closed = True
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                raise StopAsyncIteration
            if self._closed:
                raise StopAsyncIteration
            self._event = self._table.new_event()
            try:
                with anyio.fail_after(self._timeout if self._timeout is not None else math.inf):
                    await self._event.wait()
            except TimeoutError:
                self._close_remote()
                raise TimeoutError(
                    f"stream from {_who(self._actor, self.peer)} sent no item within "
                    f"{self._timeout} s (the stream was closed)"
                ) from None
            except BaseException:
                self._close_remote()
                raise
        item = self._items.popleft()
        self._consumed_since_credit += 1
        # Hand credit back in batches of half a window: one message per many items.
        if self._consumed_since_credit * 2 >= self._window and not self._finished:
            credit, self._consumed_since_credit = self._consumed_since_credit, 0
            try:
                self._table._send(Kind.CREDIT, self._call_id, self.peer, credit)
            except Exception:
                pass
        return item

    def _close_remote(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._finished:
            self._table._streams.pop(self._call_id, None)
            self._table._cancel_remote(self._call_id, self.peer)
        self._items.clear()

    async def aclose(self) -> None:
        """Stop the remote generator (it sees GeneratorExit / cancellation)."""
        self._close_remote()

    async def __aenter__(self) -> RemoteStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._close_remote()

    def __del__(self) -> None:
        # ``break`` out of ``async for`` drops the last reference at once under
        # CPython: close the remote generator then rather than never.
        try:
            self._close_remote()
        except Exception:
            pass
