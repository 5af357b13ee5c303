"""Relaying between actors, under the authority rules.

A mixin of the Runtime's router. An envelope an actor addresses to another
actor is relayed without decoding its body, with the true source stamped in
its header and its fds passed on unread, but only if the rules allow it
(``_channel.RULES``, ``_capabilities``): a call, stream or cast needs a
reference to the destination; an answer must be for an open call the
destination made to the sender; credits and cancels must belong to a call
the sender made. A forged answer cuts the sender off; a call without a
reference is refused with PermissionError; a late credit or cancel (the call
ended meanwhile) is dropped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .._wire import HEADER_SIZE, Kind, encode_header
from ..errors import ActorClosedError, ActorDiedError, ActorError, ProtocolError, TransportError
from ._channel import RULES
from ._oob import forward_fds
from ._sending import Sender

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._capabilities import Capabilities
    from ._record import _Record

__all__ = ["Relay"]

log = logging.getLogger("pyisolate.runtime")

_FORWARDABLE = frozenset(k for k, rule in RULES.items() if rule.forwardable)
_OPENS = frozenset(k for k, rule in RULES.items() if rule.opens)
_ANSWERS = frozenset(k for k, rule in RULES.items() if rule.answers)
_TO_CALLEE = frozenset(k for k, rule in RULES.items() if rule.to_callee)
_FINAL = frozenset(k for k, rule in RULES.items() if rule.final)


class _Refused(Exception):
    """An envelope between actors that is not relayed; ``reason`` (if any) is
    told to the sender of a call."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Relay(Sender):
    """Relaying methods of the router (the Runtime owns the state)."""

    _holds: dict[int, Any]
    _caps: Capabilities
    _on_disconnect: Callable[[_Record], None]

    def _forward(
        self, src: _Record, kind: Kind, call_id: int, peer: int, frame: bytes, fds: list[int]
    ) -> None:
        try:
            self._admit_forward(src, kind, call_id, peer)
        except _Refused as refusal:
            forward_fds(fds, None)  # closes them
            if refusal.reason and kind in (Kind.CALL, Kind.STREAM):
                self._send_error_to(src.id, call_id, peer, PermissionError(refusal.reason))
            elif refusal.reason:
                log.warning("pyisolate: dropped a %s: %s", kind.name, refusal.reason)
            return
        except BaseException:
            forward_fds(fds, None)
            raise
        dst = self._records.get(peer)
        held = self._holds.get(peer)
        if (
            held is not None
            and (dst is None or dst.routing is None or dst.state != "running")
            and held.offer(src, kind, call_id, frame, fds)
        ):
            return  # a supervised actor between incarnations (see hold_calls)
        running = dst is not None and dst.routing is not None and dst.state == "running"
        unreachable: BaseException | None = None
        if fds:
            # Only to a running actor: fds left in a channel nobody reads
            # would be taken for the next message's.
            try:
                forward_fds(fds, dst.channel if running and dst is not None else None)
            except TransportError:
                if running and dst is not None:
                    # Its channel is gone: it died, and its exit is on the way.
                    self._on_disconnect(dst)
                    unreachable = ActorDiedError(
                        f"actor {dst.name!r} is unreachable (it died)", actor=dst.name
                    )
                running = False
        if dst is None or not running:
            if kind in (Kind.CALL, Kind.STREAM):
                error = (
                    unreachable
                    if unreachable is not None
                    else dst.closed_error()
                    if dst is not None
                    else ActorClosedError(f"no actor with id {peer}")
                )
                self._send_error_to(src.id, call_id, peer, error)
            return
        if kind in _OPENS:
            if kind is not Kind.CAST:
                dst.inbound.add((src.id, call_id))
        elif kind in _FINAL:
            src.inbound.discard((dst.id, call_id))
        self._caps.heard_from(dst.id, src.id)
        # Re-stamp the header with the true source; the body travels unread.
        restamped = encode_header(kind, call_id, src.id, len(fds)) + frame[HEADER_SIZE:]
        try:
            self._emit(dst, restamped)
        except ActorError as exc:
            if kind in (Kind.CALL, Kind.STREAM):
                dst.inbound.discard((src.id, call_id))
                self._send_error_to(src.id, call_id, peer, exc)

    def _admit_forward(self, src: _Record, kind: Kind, call_id: int, peer: int) -> None:
        """The authority rules for an envelope ``src`` addresses to actor ``peer``;
        raises ProtocolError (the sender is cut off) or _Refused (dropped)."""
        if kind not in _FORWARDABLE:
            raise ProtocolError(f"{kind.name} cannot be sent to another actor")
        if kind in _OPENS:
            if not self._caps.may_open(src.id, peer):
                raise _Refused(
                    f"actor {src.name!r} holds no reference to actor id {peer}: an actor may "
                    "call only the actors whose references it was given"
                )
        elif kind in _ANSWERS:
            # Only the callee answers, and only calls it was sent (and not yet
            # finished): anything else is a forgery aimed at another caller.
            dst = self._records.get(peer)
            if dst is None or (peer, call_id) not in src.inbound:
                raise ProtocolError(
                    f"{kind.name} to actor id {peer} for call {call_id}, which it never sent "
                    f"to actor {src.name!r}"
                )
        elif kind in _TO_CALLEE:
            dst = self._records.get(peer)
            if (dst is None or (src.id, call_id) not in dst.inbound) and peer not in self._holds:
                raise _Refused("")  # the call ended meanwhile: a harmless race
        elif kind is Kind.TRANSPORT and not self._caps.may_control(src.id, peer):
            raise _Refused("")
