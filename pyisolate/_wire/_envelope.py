"""Envelope headers: the small first frame of every ZeroMQ message.

A message is one or two ZeroMQ frames: ``[header]`` or ``[header, body]``.
The header is a msgpack array ``[kind, call_id, peer, nfds]``:

* ``kind``: a :class:`Kind`.
* ``call_id``: chosen by the caller, unique among its pending calls; replies,
  stream items, credits and cancels carry the call's id.
* ``peer``: on messages *to* the host, the destination actor id (0 = the host);
  on messages *from* the host, the source actor id (0 = the host). The host
  stamps the source itself, so an actor cannot pretend to be another one.
* ``nfds``: how many file descriptors travel with the message on the actor's
  side channel (out-of-band tensor memory); the host forwards them unread.

Keeping routing data out of the body lets the host forward actor-to-actor
messages without decoding their payload.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import msgpack

from ..errors import ProtocolError

__all__ = ["HOST", "PROTOCOL_VERSION", "Header", "Kind", "decode_header", "encode_header"]

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


class Header(NamedTuple):
    kind: Kind
    call_id: int
    peer: int
    nfds: int


def encode_header(kind: Kind, call_id: int = 0, peer: int = HOST, nfds: int = 0) -> bytes:
    return msgpack.packb((int(kind), call_id, peer, nfds))  # type: ignore[no-any-return]


def decode_header(frame: bytes) -> Header:
    """Decode and validate a header; anything malformed is a ProtocolError."""
    if len(frame) > _MAX_HEADER:
        raise ProtocolError(f"header of {len(frame)} bytes exceeds {_MAX_HEADER}")
    try:
        raw = msgpack.unpackb(frame, max_array_len=4, max_map_len=0, max_str_len=0,
                              max_bin_len=0, max_ext_len=0)
        kind_raw, call_id, peer, nfds = raw
        if not all(type(x) is int for x in raw):
            raise ValueError("header fields must be integers")
        if call_id < 0 or peer < 0 or not 0 <= nfds <= 253:
            raise ValueError("header field out of range")
        return Header(Kind(kind_raw), call_id, peer, nfds)
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"malformed header: {exc!r}") from None
