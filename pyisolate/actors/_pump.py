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
from collections.abc import Callable, Sequence

import anyio
import zmq

from ._calls import on_asyncio

__all__ = ["Pump"]

Frames = list[bytes]

# Plain ints: pyzmq's constants are enums, and enum arithmetic showed up in
# profiles of the per-message path.
_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


class Pump:
    """Receives every message of ``sock`` into ``on_message`` and sends for all.

    ``run()`` is the only task that waits on the socket. ``send()`` may be
    called from any task of the same event loop thread.
    """

    def __init__(
        self,
        sock: zmq.Socket[bytes],
        on_message: Callable[[Frames], None],
        *,
        multipart: bool = True,
    ) -> None:
        self.sock = sock
        self._on_message = on_message
        self._multipart = multipart
        self._fd: int = sock.getsockopt(zmq.FD)
        self._draining = False
        self.closed = False

    def send(self, frames: Sequence[bytes]) -> None:
        """Queue ``frames`` for sending without blocking; then drain the socket
        (see the module docstring for why)."""
        sock = self.sock
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            sock.send(frame, _NOBLOCK_MORE if i < last else _NOBLOCK, copy=len(frame) < 65536)
        if sock.getsockopt(_EVENTS) & _POLLIN:
            self.drain()

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
            try:
                self.drain()
                await anyio.sleep_forever()
            finally:
                loop.remove_reader(self._fd)
        while not self.closed:
            self.drain()
            if self.closed:
                return
            await anyio.wait_readable(self._fd)
