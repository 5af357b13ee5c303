"""The channel: the ZeroMQ control path between the host and its actors.

This is the only module that imports ZeroMQ. It holds three things that the
host's router (``_router``) and the actor's server (``_child``) share, so that
both sides admit envelopes by the same rules:

* :data:`RULES`, one row per envelope :class:`~pyisolate._wire.Kind`: who may
  send it (host, actor), whether an actor may address it to another actor
  (the host relays it), whether it opens a call, answers one or ends one. The
  router checks every envelope an actor sends against its row; a test checks
  that each side handles exactly the kinds its row says it receives.
* the socket factories, with the limits that keep one peer from exhausting
  the host: per-peer high-water marks and the frame size cap;
* :class:`Pump`, which drives one socket from an anyio event loop (asyncio or
  trio), receiving with a budget per loop turn so that a flooding peer slows
  itself, never the loop, and coalescing sends into BATCH frames.

Why not ``zmq.asyncio``: it ties us to asyncio. The pump waits on the socket's
notification file descriptor with :func:`anyio.wait_readable`, which works on
both backends. That descriptor is edge-triggered and *any* operation on the
socket, a send included, may consume the edge, so whoever touches the socket
drains it: after every send the pump checks ``ZMQ_EVENTS`` and, if a message
is ready, dispatches what is pending right there (up to the budget; the rest
is scheduled for the next turn, never left waiting for an edge that will not
come). On asyncio the descriptor is watched with ``loop.add_reader`` and
drained from the selector's callback: no task wakes up per message.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, NamedTuple

import anyio
import zmq

from .._wire import Kind, encode_batch
from ..errors import MessageTooLargeError
from ._calls import on_asyncio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_ENTRIES",
    "RULES",
    "Context",
    "PeerBusy",
    "PeerGone",
    "Pump",
    "Rule",
    "actor_socket",
    "check_size",
    "host_socket",
]

Frames = list[bytes]
Context = zmq.Context


class Rule(NamedTuple):
    """What one envelope kind may do; see :data:`RULES`."""

    from_host: bool  # the host may send it to an actor
    from_actor: bool  # an actor may send it (to the host, or relayed)
    forwardable: bool  # an actor may address it to another actor
    opens: bool = False  # starts a call, stream or cast: needs a reference
    answers: bool = False  # callee -> caller, only for a call the caller made
    to_callee: bool = False  # caller -> callee, only for a call the caller made
    final: bool = False  # ends the call it answers


_NO, _YES = False, True
#: The admission rules, per kind. Values of ``Kind`` missing here are refused.
RULES: dict[Kind, Rule] = {
    Kind.HELLO: Rule(_NO, _YES, _NO),
    Kind.READY: Rule(_NO, _YES, _NO),
    Kind.START_FAILED: Rule(_NO, _YES, _NO),
    Kind.CALL: Rule(_YES, _YES, _YES, opens=True),
    Kind.CAST: Rule(_YES, _YES, _YES, opens=True),
    Kind.STREAM: Rule(_YES, _YES, _YES, opens=True),
    Kind.REPLY: Rule(_YES, _YES, _YES, answers=True, final=True),
    Kind.ERROR: Rule(_YES, _YES, _YES, answers=True, final=True),
    Kind.ITEM: Rule(_YES, _YES, _YES, answers=True),
    Kind.END: Rule(_YES, _YES, _YES, answers=True, final=True),
    Kind.CREDIT: Rule(_YES, _YES, _YES, to_callee=True),
    Kind.CANCEL: Rule(_YES, _YES, _YES, to_callee=True),
    Kind.PING: Rule(_YES, _NO, _NO),
    Kind.PONG: Rule(_NO, _YES, _NO, answers=True, final=True),
    Kind.SHUTDOWN: Rule(_YES, _NO, _NO),
    Kind.REFUSED: Rule(_YES, _NO, _NO),
    Kind.LOG: Rule(_NO, _NO, _NO),  # reserved: actors' logs travel on their stderr
    Kind.TRANSPORT: Rule(_YES, _YES, _YES),
    Kind.INTRODUCE: Rule(_NO, _YES, _NO),
    # BATCH is framing: split by whoever receives it, never handled as such.
}

# Plain ints: pyzmq's constants are enums, and enum arithmetic showed up in
# profiles of the per-message path.
_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_EAGAIN = int(zmq.EAGAIN)
# Below this a frame is copied into ZeroMQ (cheaper than tracking a zero-copy
# buffer) and may share a batch; above, it is sent alone without a copy.
_ZERO_COPY_FROM = 65536
#: A BATCH frame carries at most this many envelopes and bytes: a receiver
#: handles a batch in one go, so its size bounds the receiver's longest stall.
MAX_BATCH_ENTRIES = 256
MAX_BATCH_BYTES = 1 << 20
#: Envelopes handled per loop turn before the pump lets other work run. A
#: small call costs the host about 10 µs to route, so a turn stays near 3 ms.
RECEIVE_BUDGET = 256
#: Messages the host buffers from one actor before ZeroMQ stops reading its
#: connection (the actor's own sends then wait, in its own memory).
HOST_RCVHWM = 64
#: Messages the host queues towards one actor that does not read them.
HOST_SNDHWM = 1000


class PeerGone(Exception):
    """A send found the peer's connection gone (it died, or is exiting)."""


class PeerBusy(Exception):
    """A send found the peer's queue full: it has not read its messages."""


def check_size(nbytes: int, limit: int) -> None:
    """Refuse, before anything is sent, an envelope its receiver would refuse."""
    if nbytes > limit:
        raise MessageTooLargeError(
            f"the message encodes to {nbytes:,} bytes, over the {limit:,}-byte frame limit: "
            "send large data as bytes, a tensor, an array or pyisolate.transport.OutOfBand "
            "(those move out of band), or raise the limit with Runtime(limits=Limits(max_frame=...))",
            size=nbytes,
            limit=limit,
        )


def host_socket(ctx: zmq.Context[zmq.Socket[bytes]], max_frame: int) -> zmq.Socket[bytes]:
    """The host's ROUTER: one pipe per actor, each bounded."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, HOST_SNDHWM)
    sock.setsockopt(zmq.RCVHWM, HOST_RCVHWM)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    # ZeroMQ drops a peer whose message exceeds this, before we buffer it.
    sock.setsockopt(zmq.MAXMSGSIZE, max_frame + 1024)
    return sock


def actor_socket(
    ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, max_frame: int
) -> zmq.Socket[bytes]:
    """An actor's DEALER, connected to the host. Its send queue is unbounded
    on purpose: when the host stops reading, the actor waits in its own memory."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.RECONNECT_IVL, -1)
    sock.setsockopt(zmq.MAXMSGSIZE, max_frame + 1024)
    sock.connect(endpoint)
    return sock


def monitor_socket(sock: zmq.Socket[bytes]) -> zmq.Socket[bytes]:
    """Disconnect events of ``sock`` (a crash, or ZeroMQ dropping an oversized
    message); they arrive without the peer's identity."""
    return sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)


def close_sockets(ctx: zmq.Context[zmq.Socket[bytes]], *socks: zmq.Socket[bytes]) -> None:
    for sock in socks:
        sock.close(linger=0)
    ctx.term()


class Pump:
    """Receives every message of ``sock`` into ``on_message`` and sends for all.

    ``run()`` is the only task that waits on the socket. ``send()`` may be
    called from any task of the same event loop thread. ``on_message``
    returns how many envelopes it handled (a BATCH frame counts each), which
    the receive budget counts.

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
        on_message: Callable[[Frames], int | None],
        *,
        multipart: bool = True,
        on_send_error: Callable[[bytes | None, Exception], None] | None = None,
        budget: int = RECEIVE_BUDGET,
    ) -> None:
        self.sock = sock
        self._on_message = on_message
        self._on_send_error = on_send_error
        self._multipart = multipart
        self._budget = budget
        self._fd: int = int(sock.getsockopt(zmq.FD))
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: dict[bytes | None, list[bytes]] = {}
        self._flush_scheduled = False
        self._more_scheduled = False
        self._more_pending = False  # trio: the budget ran out with messages left
        self.closed = False

    def send(self, payload: bytes, routing: bytes | None = None) -> None:
        """Send one envelope (to ``routing`` on a ROUTER). Never blocks.

        Raises PeerGone or PeerBusy for the first envelope of a turn; later
        ones report through ``on_send_error`` when they are flushed.
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
        try:
            if routing is not None:
                self.sock.send(routing, _NOBLOCK_MORE)
            self.sock.send(frame, _NOBLOCK, copy=copy)
        except zmq.ZMQError as exc:
            if exc.errno == _EAGAIN:
                raise PeerBusy("its queue is full: it has not read its messages") from None
            # EHOSTUNREACH: the ROUTER has dropped the peer's connection.
            raise PeerGone("its connection is closed") from None

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
                small_bytes = 0
                for payload in payloads:
                    if len(payload) >= _ZERO_COPY_FROM:
                        self._send_batch(routing, small)
                        small, small_bytes = [], 0
                        self._send_now(routing, payload)  # big ones travel alone, uncopied
                        continue
                    if len(small) >= MAX_BATCH_ENTRIES or small_bytes + len(payload) > (
                        MAX_BATCH_BYTES
                    ):
                        self._send_batch(routing, small)
                        small, small_bytes = [], 0
                    small.append(payload)
                    small_bytes += len(payload)
                self._send_batch(routing, small)
            except (PeerGone, PeerBusy) as exc:
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
        """Dispatch the messages that are ready now, up to the turn's budget;
        if more wait, continue on the next turn of the loop."""
        if self._draining or self.closed:
            return
        self._draining = True
        budget = self._budget
        try:
            sock = self.sock
            on_message = self._on_message
            while not self.closed:
                if budget <= 0:
                    self._more_later()
                    return
                try:
                    if self._multipart:
                        frames = sock.recv_multipart(_NOBLOCK)
                    else:
                        frames = [sock.recv(_NOBLOCK)]
                except zmq.Again:
                    return
                # Envelopes, or one unit per 8 KiB where that is more: decoding
                # costs by the byte too. ZeroMQ's ROUTER takes messages from
                # its peers in turn, so the budget is shared fairly.
                budget -= max(on_message(frames) or 1, len(frames[-1]) >> 13)
        finally:
            self._draining = False

    def _more_later(self) -> None:
        if self._loop is not None:
            if not self._more_scheduled:
                self._more_scheduled = True
                self._loop.call_soon(self._drain_more)
        else:
            self._more_pending = True

    def _drain_more(self) -> None:
        self._more_scheduled = False
        self.drain()

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
            self._more_pending = False
            self.drain()
            if self.closed:
                return
            if self._more_pending:
                # The budget ran out: let other tasks run, then go on without
                # waiting for an edge (it was consumed by our own reads).
                await anyio.lowlevel.checkpoint()
                continue
            await anyio.wait_readable(self._fd)
