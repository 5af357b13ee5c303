"""One ZeroMQ socket driven from an anyio event loop (asyncio or trio).

Why not ``zmq.asyncio``: it ties us to asyncio. Instead we wait on the socket's
notification file descriptor with :func:`anyio.wait_readable`, which works on
both backends.

The catch is that this descriptor is edge-triggered and *any* operation on the
socket, a send included, may consume the edge. A reader parked on the
descriptor could then sleep while a message waits. The rule that makes it
safe: whoever touches the socket drains it. After every send we check
``ZMQ_EVENTS`` and, if a message is ready, dispatch everything pending right
there. Dispatch is synchronous (it resolves futures and starts tasks), so a
send never blocks on a handler, and a re-entrant drain is skipped.

On asyncio the descriptor is watched with ``loop.add_reader`` and drained from
the selector's callback: no task wakes up per message, which is most of what a
small call costs on the host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio
import zmq

from .._wire import encode_batch
from ._calls import on_asyncio

__all__ = ["Pump"]

Frames = list[bytes]

# Plain ints: pyzmq's constants are enums, and enum arithmetic showed up in
# profiles of the per-message path.
_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
# Below this a frame is copied into ZeroMQ (cheaper than tracking a zero-copy
# buffer) and may share a batch; above, it is sent alone without a copy.
_ZERO_COPY_FROM = 65536


class Pump:
    """Receives every message of ``sock`` into ``on_message`` and sends for all.

    ``run()`` is the only task that waits on the socket. ``send()`` may be
    called from any task of the same event loop thread.

    On asyncio, sends are also coalesced: the first envelope of a turn of the
    event loop leaves at once (an isolated call pays no extra latency), the
    ones that follow in the same turn are queued and leave together as BATCH
    frames at the end of the turn. Under load (many calls in flight) that
    turns dozens of ZeroMQ sends, each of which may wake ZeroMQ's I/O thread,
    into two. A send error found at flush time goes to
    ``on_send_error(routing_id, error)``.
    """

    def __init__(
        self,
        sock: zmq.Socket[bytes],
        on_message: Callable[[Frames], None],
        *,
        multipart: bool = True,
        on_send_error: Callable[[bytes | None, zmq.ZMQError], None] | None = None,
    ) -> None:
        self.sock = sock
        self._on_message = on_message
        self._on_send_error = on_send_error
        self._multipart = multipart
        self._fd: int = int(sock.getsockopt(zmq.FD))
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: dict[bytes | None, list[bytes]] = {}
        self._flush_scheduled = False
        self.closed = False

    def send(self, payload: bytes, routing: bytes | None = None) -> None:
        """Send one envelope (to ``routing`` on a ROUTER). Never blocks.

        Without batching, a send error (the peer is gone) raises here.
        """
        if self._flush_scheduled:  # not the first send of this turn: queue it
            box = self._outbox.get(routing)
            if box is None:
                self._outbox[routing] = [payload]
            else:
                box.append(payload)
            return
        self._send_now(routing, payload)
        if self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)
            return
        if int(self.sock.getsockopt(_EVENTS)) & _POLLIN:
            self.drain()

    def _send_now(self, routing: bytes | None, frame: bytes) -> None:
        copy = len(frame) < _ZERO_COPY_FROM
        if routing is not None:
            self.sock.send(routing, _NOBLOCK_MORE)
        self.sock.send(frame, _NOBLOCK, copy=copy)

    def flush(self) -> None:
        """Send everything queued; see the class docstring."""
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, {}
        for routing, payloads in outbox.items():
            try:
                if len(payloads) == 1:
                    self._send_now(routing, payloads[0])
                    continue
                small: list[bytes] = []
                for payload in payloads:
                    if len(payload) < _ZERO_COPY_FROM:
                        small.append(payload)
                        continue
                    self._send_batch(routing, small)
                    small = []
                    self._send_now(routing, payload)  # big ones travel alone, uncopied
                self._send_batch(routing, small)
            except zmq.ZMQError as exc:
                if self._on_send_error is None:
                    raise
                self._on_send_error(routing, exc)
        if not self.closed and int(self.sock.getsockopt(_EVENTS)) & _POLLIN:
            self.drain()

    def _send_batch(self, routing: bytes | None, payloads: list[bytes]) -> None:
        if len(payloads) == 1:
            self._send_now(routing, payloads[0])
        elif payloads:
            self._send_now(routing, encode_batch(payloads))

    def drain(self) -> None:
        """Dispatch every message that is ready now."""
        if self._draining or self.closed:
            return
        self._draining = True
        try:
            sock = self.sock
            on_message = self._on_message
            while not self.closed:
                try:
                    if self._multipart:
                        frames = sock.recv_multipart(_NOBLOCK)
                    else:
                        frames = [sock.recv(_NOBLOCK)]
                except zmq.Again:
                    return
                on_message(frames)
        finally:
            self._draining = False

    async def run(self) -> None:
        """Wait for and dispatch messages until cancelled or closed."""
        if on_asyncio():
            loop = asyncio.get_running_loop()
            loop.add_reader(self._fd, self.drain)
            self._loop = loop
            try:
                self.drain()
                await anyio.sleep_forever()
            finally:
                self._loop = None
                loop.remove_reader(self._fd)
                if self._outbox:
                    self.flush()
        while not self.closed:
            self.drain()
            if self.closed:
                return
            await anyio.wait_readable(self._fd)
