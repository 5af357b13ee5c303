"""Envelope headers: the small first frame of every ZeroMQ message.

A message is one ZeroMQ frame: a fixed 14-byte header followed by the
msgpack body (possibly empty). The header is ``struct`` ``!BQIB``:

* ``kind``: a :class:`Kind`.
* ``call_id``: chosen by the caller, unique among its pending calls; replies,
  stream items, credits and cancels carry the call's id.
* ``peer``: on messages *to* the host, the destination actor id (0 = the host);
  on messages *from* the host, the source actor id (0 = the host). The host
  stamps the source itself, so an actor cannot pretend to be another one.
* ``nfds``: how many file descriptors travel with the message on the actor's
  side channel (out-of-band tensor memory); the host forwards them unread.

A fixed binary header lets the host route and forward actor-to-actor messages
without decoding their payload, and one frame per message halves the work
ZeroMQ does per call compared with a separate header frame.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from ..errors import ProtocolError

__all__ = [
    "HEADER_SIZE",
    "HOST",
    "PROTOCOL_VERSION",
    "Header",
    "Kind",
    "decode_header",
    "encode_batch",
    "encode_header",
    "split_batch",
]

#: Bumped on any incompatible change of envelope or codec.
PROTOCOL_VERSION = 1

#: The peer id of the host.
HOST = 0

_MAX_HEADER = 64


class Kind(enum.IntEnum):
    """What a message is. Values are part of the protocol: never renumber."""

    HELLO = 0  # actor -> host: [version, actor_id, token]
    READY = 1  # actor -> host: constructor and on_start done
    START_FAILED = 2  # actor -> host: error body
    CALL = 3  # body: [method, args, kwargs]
    CAST = 4  # body: [method, args, kwargs]; no reply
    REPLY = 5  # body: value
    ERROR = 6  # body: exception (see _exceptions)
    STREAM = 7  # body: [method, args, kwargs, credit]
    ITEM = 8  # body: value
    END = 9  # no body
    CREDIT = 10  # body: int
    CANCEL = 11  # no body
    PING = 12  # no body
    PONG = 13  # no body
    SHUTDOWN = 14  # host -> actor: stop gracefully
    LOG = 15  # actor -> host: [levelno, logger name, message]
    REFUSED = 16  # host -> unauthenticated peer: handshake refused, body: reason
    TRANSPORT = 17  # transport control (e.g. CUDA IPC releases), body opaque to the core
    BATCH = 18  # several envelopes in one frame: repeated [u32 length][envelope]
    INTRODUCE = 19  # actor -> host: [actor id, capability token] of a reference it received


class Header(NamedTuple):
    kind: Kind
    call_id: int
    peer: int
    nfds: int


_HEADER = struct.Struct("!BQIB")
HEADER_SIZE = _HEADER.size
_KINDS = {int(k): k for k in Kind}


_LENGTH = struct.Struct("!I")


def encode_batch(envelopes: list[bytes]) -> bytes:
    """One frame carrying several envelopes for the same peer, in order."""
    parts = [_HEADER.pack(Kind.BATCH, 0, HOST, 0)]
    for envelope in envelopes:
        parts.append(_LENGTH.pack(len(envelope)))
        parts.append(envelope)
    return b"".join(parts)


def split_batch(frame: bytes, max_entries: int | None = None) -> list[bytes]:
    """The envelopes of a BATCH frame; a malformed one, or one of more than
    ``max_entries`` envelopes, is a ProtocolError."""
    out: list[bytes] = []
    view = memoryview(frame)
    pos, end = HEADER_SIZE, len(frame)
    while pos < end:
        if pos + 4 > end:
            raise ProtocolError("truncated batch")
        (length,) = _LENGTH.unpack_from(view, pos)
        pos += 4
        if length < HEADER_SIZE or pos + length > end:
            raise ProtocolError("malformed batch entry")
        envelope = bytes(view[pos : pos + length])
        if envelope[0] == Kind.BATCH:
            raise ProtocolError("nested batch")
        out.append(envelope)
        if max_entries is not None and len(out) > max_entries:
            raise ProtocolError(f"a batch of more than {max_entries} envelopes")
        pos += length
    return out


def encode_header(kind: Kind, call_id: int = 0, peer: int = HOST, nfds: int = 0) -> bytes:
    return _HEADER.pack(kind, call_id, peer, nfds)


def decode_header(frame: bytes) -> Header:
    """Decode and validate the header at the start of ``frame``; a short frame
    or an unknown kind is a ProtocolError."""
    if len(frame) < HEADER_SIZE:
        raise ProtocolError(f"message of {len(frame)} bytes is shorter than a header")
    kind, call_id, peer, nfds = _HEADER.unpack_from(frame)
    try:
        return Header(_KINDS[kind], call_id, peer, nfds)
    except KeyError:
        raise ProtocolError(f"unknown message kind {kind}") from None
