"""The host's receiving side: handshakes, routing, forwarding, cut-offs.

Every message from an actor arrives here. Messages for the host are decoded
and handled; messages between actors are forwarded with the source stamped by
the host (an actor cannot pose as another) and without decoding their bodies;
a handshake with a wrong token or version is refused; anything malformed cuts
off that one actor with ProtocolError, and everyone else is served on.

A mixin of :class:`~pyisolate.actors._runtime.Runtime`, which owns the state
it works on (declared below for the type checker).
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

import anyio
import msgpack

from .._wire import (
    HEADER_SIZE,
    HOST,
    PROTOCOL_VERSION,
    Codec,
    DecodeContext,
    Kind,
    decode_header,
    encode_header,
    split_batch,
)
from ..errors import (
    ActorDiedError,
    ActorStartError,
    ProtocolError,
    TransportError,
)
from ._channel import MAX_BATCH_ENTRIES, RULES, PeerBusy, PeerGone, Pump
from ._oob import decode_with_fds, forward_fds, receive_fds
from ._peercred import read_credentials
from ._ref import ActorRef
from ._relay import Relay
from ._spawnargs import start_error

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..transport.lowlevel import LazySession
    from ._calls import CallTable
    from ._capabilities import Capabilities
    from ._record import _Record

__all__ = ["Router"]

log = logging.getLogger("pyisolate.runtime")

_DISCONNECT_GRACE = 1.0
_BATCH = bytes([Kind.BATCH])


def _ignore(record: _Record, kind: Kind, call_id: int, body: Any) -> None:
    """Kinds an actor may send the host that need nothing done."""


class Router(Relay):
    """Routing methods of the Runtime: admission of what actors send (relaying
    between actors is :class:`Relay`, sending :class:`Sender`)."""

    _records: dict[int, _Record]
    _by_routing: dict[bytes, _Record]
    _holds: dict[int, Any]
    _codec: Codec
    _pump: Pump
    _tg: Any
    _caps: Capabilities
    _host_handlers: dict[Kind, Callable[[_Record, Kind, int, Any], None]]
    calls: CallTable
    transport: LazySession

    # -- receiving ---------------------------------------------------------------

    def _on_message(self, frames: list[bytes]) -> int:
        """One ZeroMQ message from an actor; returns how many envelopes it held
        (the pump's receive budget counts them)."""
        try:
            return self._route(frames)
        except Exception:  # a bug here must not take the whole runtime down
            log.exception("pyisolate: internal error while routing a message")
            return 1

    def _on_monitor_event(self, frames: list[bytes]) -> int:
        self._probe_connections()
        # The event can arrive before the ROUTER has dropped the peer's pipe,
        # when a probe still succeeds: look again a little later.
        self._tg.start_soon(self._reprobe)
        return 1

    async def _reprobe(self) -> None:
        for delay in (0.02, 0.1, 0.5):
            await anyio.sleep(delay)
            self._probe_connections()

    def _probe_connections(self) -> None:
        for record in list(self._by_routing.values()):
            if record.state != "running":
                continue
            try:
                self._raw_send(record, Kind.PING, 0, HOST)
            except ActorDiedError:
                self._on_disconnect(record)

    def _on_send_error(self, routing: bytes | None, error: Exception) -> None:
        record = self._by_routing.get(routing) if routing is not None else None
        if record is None:
            return
        if isinstance(error, PeerBusy):
            # Queued sends are fire-and-forget by then: an actor that does not
            # read its messages loses them, and is told so in the log.
            log.warning(
                "pyisolate: actor %r is not reading its messages: some were dropped", record.name
            )
            return
        self._on_disconnect(record)

    def _route(self, frames: list[bytes]) -> int:
        routing = frames[0]
        record = self._by_routing.get(routing)
        if record is None:
            self._handshake(routing, frames)
            return 1
        try:
            if len(frames) != 2:
                raise ProtocolError(f"message of {len(frames) - 1} frames")
            frame = frames[1]
            if frame[:1] == _BATCH:
                envelopes = split_batch(frame, MAX_BATCH_ENTRIES)
                for envelope in envelopes:
                    self._route_one(record, envelope)
                    if record.state == "dead":
                        break
                return len(envelopes)
        except ProtocolError as exc:
            self._cut_off(record, exc)
            return 1
        self._route_one(record, frame)
        return 1

    def _route_one(self, record: _Record, frame: bytes) -> None:
        if record.state == "dead":
            return  # cut off mid-batch: nothing more of it is admitted
        try:
            header = decode_header(frame)
            rule = RULES.get(header.kind)
            if rule is None or not rule.from_actor:
                raise ProtocolError(f"actors may not send {header.kind.name}")
            fds = receive_fds(record.channel, header.nfds)
            if header.peer != HOST:
                self._forward(record, header.kind, header.call_id, header.peer, frame, fds)
                return
            body = None
            if len(frame) > HEADER_SIZE:
                dctx = DecodeContext(peer=record.id, session=self.transport, endpoint=self)
                body = decode_with_fds(self._codec, memoryview(frame)[HEADER_SIZE:], fds, dctx)
            elif fds:
                forward_fds(fds, None)  # closes them: fds without a body to use them
                raise ProtocolError("file descriptors sent without a body")
            self._host_handlers[header.kind](record, header.kind, header.call_id, body)
        except ProtocolError as exc:
            self._cut_off(record, exc)
        if self.transport.started:
            # A safe point (no encode in progress): let segment releases queued
            # by garbage collection leave now rather than on the next tick.
            self.transport.flush()

    def _handshake(self, routing: bytes, frames: list[bytes]) -> None:
        try:
            if len(frames) != 2 or len(frames[1]) > 512:
                raise ProtocolError("expected a HELLO")
            header = decode_header(frames[1])
            if header.kind is not Kind.HELLO:
                raise ProtocolError(f"expected HELLO, got {header.kind.name}")
            version, actor_id, token = msgpack.unpackb(
                frames[1][HEADER_SIZE:],
                max_bin_len=256,
                max_str_len=256,
                max_array_len=3,
                max_map_len=0,
            )
            if type(actor_id) is not int or not isinstance(token, bytes):
                raise ProtocolError("malformed HELLO")
        except Exception as exc:
            self._refuse(routing, f"handshake refused: {exc}")
            return
        record = self._records.get(actor_id)
        if (
            record is None
            or record.state != "starting"
            or record.routing is not None
            or not hmac.compare_digest(token, record.token)
        ):
            self._refuse(routing, "handshake refused: unknown actor or wrong token")
            return
        if version != PROTOCOL_VERSION:
            self._refuse(routing, f"protocol version {version!r} is not {PROTOCOL_VERSION}")
            record.start_error = ActorStartError(
                f"actor {record.name!r} speaks protocol version {version!r}; this host speaks "
                f"{PROTOCOL_VERSION}",
                actor=record.name,
            )
            record.start_error.__cause__ = ProtocolError("protocol version mismatch")
            record.ready.set()
            if record.process is not None:
                record.process.kill()
            return
        record.routing = routing
        self._by_routing[routing] = record
        if record.channel is not None and record.process is not None:
            # Sent before the HELLO, so it is waiting on the side channel now.
            record.process.adopt_actor_pid(read_credentials(record.channel))
        self._emit(record, encode_header(Kind.CALL, 0, HOST, record.init_nfds) + record.init_body)
        record.init_body = b""  # sent: do not hold the constructor's arguments for life

    def _refuse(self, routing: bytes, reason: str) -> None:
        log.warning("pyisolate: refused a connection: %s", reason)
        try:
            self._pump.send(encode_header(Kind.REFUSED) + msgpack.packb(reason), routing)
        except (PeerGone, PeerBusy):
            pass

    # -- envelopes for the host -------------------------------------------------

    def _make_host_handlers(self) -> dict[Kind, Callable[[_Record, Kind, int, Any], None]]:
        """What the host does with each kind an actor may send it (RULES'
        ``from_actor`` kinds; a test checks that the two agree)."""
        answer = self._on_answer
        return {
            Kind.HELLO: self._on_repeated_hello,
            Kind.READY: self._on_ready,
            Kind.START_FAILED: self._on_start_failed,
            Kind.CALL: self._on_call_to_host,
            Kind.STREAM: self._on_call_to_host,
            Kind.CAST: _ignore,
            Kind.REPLY: answer,
            Kind.ERROR: answer,
            Kind.ITEM: answer,
            Kind.END: answer,
            Kind.PONG: answer,
            Kind.CREDIT: _ignore,  # the host serves no streams
            Kind.CANCEL: _ignore,  # nor calls
            Kind.TRANSPORT: self._on_transport,
            Kind.INTRODUCE: self._on_introduce,
        }

    def _on_answer(self, record: _Record, kind: Kind, call_id: int, body: Any) -> None:
        self.calls.dispatch(kind, call_id, body, record.id, actor=record.name)

    def _on_repeated_hello(self, record: _Record, kind: Kind, call_id: int, body: Any) -> None:
        raise ProtocolError("a second HELLO on an open connection")

    def _on_ready(self, record: _Record, kind: Kind, call_id: int, body: Any) -> None:
        if record.state != "starting":
            raise ProtocolError("READY from an actor that is not starting")
        if not isinstance(body, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in body.items()
        ):
            raise ProtocolError("malformed READY")
        endpoint: Any = self  # the Runtime this mixes into
        record.ref = ActorRef(
            endpoint, record.id, record.name, body, default_timeout=record.options.call_timeout
        )
        record.state = "running"
        record.ready.set()
        if self.transport.started:
            self.transport.peer_connected(record.id)
        held = self._holds.get(record.id)
        if held is not None:
            held.deliver()  # calls made while it restarted, in order

    def _on_start_failed(self, record: _Record, kind: Kind, call_id: int, body: Any) -> None:
        if record.state != "starting":
            raise ProtocolError("START_FAILED from an actor that is not starting")
        record.start_error = start_error(record.name, body)
        record.ready.set()

    def _on_call_to_host(self, record: _Record, kind: Kind, call_id: int, body: Any) -> None:
        self._send_error_to(record.id, call_id, HOST, AttributeError("the host serves no methods"))

    def _on_transport(self, record: _Record, kind: Kind, call_id: int, body: Any) -> None:
        try:
            self.transport.handle_control(record.id, body)
        except TransportError as exc:
            raise ProtocolError(f"bad transport control message: {exc}") from None

    def _on_introduce(self, record: _Record, kind: Kind, call_id: int, body: Any) -> None:
        if (
            not isinstance(body, list)
            or len(body) != 2
            or type(body[0]) is not int
            or not isinstance(body[1], bytes)
        ):
            raise ProtocolError("malformed INTRODUCE")
        if not self._caps.introduce(record.id, body[0], body[1]):
            raise ProtocolError(f"forged reference to actor id {body[0]} (wrong capability token)")

    def _on_disconnect(self, record: _Record) -> None:
        if record.state not in ("running", "starting") or record.disconnected:
            return
        record.disconnected = True

        async def judge() -> None:
            # A crash closes the connection too; give the exit a moment to be
            # seen before calling it a protocol violation.
            assert record.process is not None
            with anyio.move_on_after(_DISCONNECT_GRACE):
                await record.process.exited.wait()
            if not record.process.exited.is_set():
                self._cut_off(
                    record,
                    ProtocolError(
                        f"actor {record.name!r} dropped its connection (a message over the "
                        f"{self._codec.limits.max_frame}-byte limit, or a closed socket)"
                    ),
                )

        self._tg.start_soon(judge)

    def _cut_off(self, record: _Record, exc: ProtocolError) -> None:
        """Disconnect a misbehaving actor: fail its calls with ``exc``, kill it."""
        if record.state in ("dead", "stopped"):
            return
        log.error("pyisolate: actor %r violated the protocol and is cut off: %s", record.name, exc)
        record.death = ProtocolError(f"actor {record.name!r} was cut off: {exc}")
        if record.state == "starting":
            record.start_error = ActorStartError(str(record.death), actor=record.name)
            record.start_error.__cause__ = exc
            record.ready.set()
        record.state = "dead"
        if record.routing is not None:
            self._by_routing.pop(record.routing, None)
            record.routing = None
        self.calls.fail_peer(record.id, record.closed_error)
        if record.process is not None:
            record.process.kill()
