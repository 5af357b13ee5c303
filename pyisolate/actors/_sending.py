"""The host's sending side: envelopes to one actor, errors to a caller.

A mixin of the Runtime, below the router (which both receives and, for
answers it makes itself, sends). Every send goes through :meth:`Sender._emit`,
which turns the channel's PeerGone/PeerBusy into the errors callers see:
ActorDiedError for an actor whose connection is gone, ActorError for one that
does not read its messages. A body is encoded with its fds checked against
the receiver's frame limit before any fd leaves (``_oob.encode_with_fds``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

from .._wire import HEADER_SIZE, HOST, Codec, EncodeContext, Kind, encode_header, exception_to_wire
from ..errors import ActorClosedError, ActorDiedError, ActorError, TransportError
from ._channel import HOST_SNDHWM, PeerBusy, PeerGone, Pump, check_size
from ._oob import encode_with_fds

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..transport.lowlevel import LazySession
    from ._record import _Record

__all__ = ["Sender"]


class Sender:
    """Sending methods of the Runtime (state declared for the type checker;
    the Runtime owns it)."""

    _records: dict[int, _Record]
    _codec: Codec
    _pump: Pump
    transport: LazySession
    # The router's: the connection of ``record`` is gone (judge it later).
    _on_disconnect: Callable[[_Record], None]

    def _close_channel(self, record: _Record) -> None:
        if record.channel is not None:
            record.channel.close()
            record.channel = None

    def _send_to(self, kind: Kind, call_id: int, peer: int, body: Any) -> None:
        record = self._records.get(peer)
        if record is None or record.routing is None or record.state not in ("running", "stopping"):
            if record is None:
                raise ActorClosedError(f"no actor with id {peer}")
            raise record.closed_error()
        if body is None:
            self._raw_send(record, kind, call_id, HOST)
            return
        ectx = EncodeContext(peer=peer, session=self.transport, endpoint=self)
        try:
            data = encode_with_fds(self._codec, body, record.channel, ectx, self._check_size)
        except TransportError as exc:
            if not isinstance(exc.__context__, (BrokenPipeError, ConnectionResetError)):
                raise
            # The actor died a moment ago (its side channel is closed) and its
            # exit is not seen yet: the same error as an unreachable socket.
            self._on_disconnect(record)
            raise ActorDiedError(
                f"actor {record.name!r} is unreachable: {exc}", actor=record.name
            ) from None
        self._emit(record, encode_header(kind, call_id, HOST, len(ectx.fds)) + data)

    def _raw_send(
        self, record: _Record, kind: Kind, call_id: int, peer: int, body: bytes | None = None
    ) -> None:
        if record.routing is None:
            return
        header = encode_header(kind, call_id, peer)
        self._emit(record, header + body if body is not None else header)

    def _check_size(self, nbytes: int) -> None:
        check_size(nbytes, self._codec.limits.max_frame - HEADER_SIZE)

    def _emit(self, record: _Record, payload: bytes) -> None:
        try:
            self._pump.send(payload, record.routing)
        except PeerGone:
            self._on_disconnect(record)
            raise ActorDiedError(
                f"actor {record.name!r} is gone: its connection closed (it died or is exiting)",
                actor=record.name,
            ) from None
        except PeerBusy:
            raise ActorError(
                f"actor {record.name!r} is not reading its messages: {HOST_SNDHWM} are queued "
                "for it already",
                actor=record.name,
            ) from None

    def _send_error_to(self, peer: int, call_id: int, source: int, exc: BaseException) -> None:
        record = self._records.get(peer)
        if record is None or record.routing is None:
            return
        body = msgpack.packb(exception_to_wire(exc, with_traceback=False))
        try:
            self._raw_send(record, Kind.ERROR, call_id, source, body)
        except ActorDiedError:
            pass
