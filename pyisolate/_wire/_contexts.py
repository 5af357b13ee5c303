"""What one encode or decode carries besides the value, and the decoder's caps.

:class:`EncodeContext` and :class:`DecodeContext` travel through every
extension encoder and decoder of one message: the peer it goes to or comes
from, the transport session, the endpoint that makes actor references, and
the file descriptors beside the envelope. :class:`Limits` bounds what a
decoder accepts from a peer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["DecodeContext", "Decoder", "EncodeContext", "Encoder", "Limits"]


@attrs.frozen
class Limits:
    """Caps on what a decoder accepts from a peer.

    ``max_frame`` bounds one envelope body: large data moves out of band, so
    64 MiB is generous. ``max_items`` bounds each array or map, ``max_depth``
    the nesting of extension types (msgpack itself caps plain nesting).
    """

    max_frame: int = 64 * 1024 * 1024
    max_items: int = 1_000_000
    max_depth: int = 32


class EncodeContext:
    """State of one encode: file descriptors to send beside the envelope and
    objects to keep alive until the message is sent.

    ``fds`` are owned by their exporters; the channel only borrows them.
    ``peer`` is the destination's peer id (the transport may pick per peer).
    ``session`` is the transport session, ``endpoint`` the runtime side that
    encodes actor references. (A plain slotted class: one is made per message.)
    """

    __slots__ = ("__weakref__", "endpoint", "fds", "keepalive", "peer", "session")

    def __init__(self, peer: int = 0, session: Any = None, endpoint: Any = None) -> None:
        self.peer = peer
        self.fds: list[int] = []
        self.keepalive: list[Any] = []
        self.session = session
        self.endpoint = endpoint


class DecodeContext:
    """State of one decode: file descriptors that arrived with the message (the
    decoder takes ownership of those it uses) and the runtime-side hooks that
    extension decoders need: ``session`` (transport) and ``endpoint`` (which
    turns an actor id into a reference that can be called from here)."""

    __slots__ = ("__weakref__", "depth", "endpoint", "fds", "peer", "session")

    def __init__(
        self,
        peer: int = 0,
        fds: list[int] | None = None,
        session: Any = None,
        endpoint: Any = None,
    ) -> None:
        self.peer = peer
        self.fds: list[int] = fds if fds is not None else []
        self.session = session
        self.endpoint = endpoint
        self.depth = 0


Encoder = Callable[[Any, EncodeContext], bytes]
Decoder = Callable[[bytes, DecodeContext], Any]
