"""Out-of-band file descriptors beside envelopes, for the host and for actors.

Tensors and large buffers travel as file descriptors (memfd, unlinked files)
on each actor's side channel, a Unix socketpair, while their small handles
ride in the envelope. The sender passes the fds *before* the ZeroMQ message
whose header counts them, so the receiver always finds them waiting. The
codec's extensions and the sessions live in :mod:`pyisolate.transport.lowlevel`;
this module only moves fds and keeps the ownership rules in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._wire import Codec, DecodeContext, EncodeContext, default_registry
from ..errors import ProtocolError, TransportError
from ..transport.lowlevel import close_unused_fds, install, recv_fds, send_fds

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

__all__ = [
    "close_unused_fds",
    "decode_with_fds",
    "encode_with_fds",
    "forward_fds",
    "receive_fds",
]

# Tensors, arrays, OutOfBand buffers, large bytes and numpy scalars travel
# through every codec; the transport package registers them lazily (an actor
# that never moves a tensor never imports the transports, torch or numpy).
install(default_registry)


def encode_with_fds(
    codec: Codec,
    body: Any,
    channel: socket.socket | None,
    ctx: EncodeContext,
    check: Callable[[int], None] | None = None,
) -> bytes:
    """Encode ``body``; pass its fds on ``channel`` now. Returns the body bytes;
    ``len(ctx.fds)`` is the header's count. ``check(size)`` may refuse the
    encoded body before any fd leaves (fds sent for a message that is then
    not sent would be taken for the next message's)."""
    try:
        data = codec.encode(body, ctx)
        if check is not None:
            check(len(data))
        if ctx.fds:
            if channel is None:
                raise TransportError("this peer has no channel for out-of-band data")
            send_fds(channel, ctx.fds)
        return data
    finally:
        # The exporters' fds are duplicated into the message by sendmsg; drop ours.
        ctx.keepalive.clear()


def receive_fds(channel: socket.socket | None, nfds: int) -> list[int]:
    """The fds announced by a header; a peer that announces fds it did not
    send is breaking the protocol."""
    if not nfds:
        return []
    if channel is None:
        raise ProtocolError("fds announced on a connection without a side channel")
    try:
        _tag, fds = recv_fds(channel, nfds)
    except (TransportError, OSError) as exc:
        raise ProtocolError(f"announced {nfds} file descriptors but: {exc}") from None
    if len(fds) != nfds:
        close_unused_fds(fds)
        raise ProtocolError(f"announced {nfds} file descriptors, sent {len(fds)}")
    return fds


def decode_with_fds(codec: Codec, data: Any, fds: list[int], ctx: DecodeContext) -> Any:
    """Decode a body with its fds; whatever no decoder took is closed."""
    ctx.fds = fds
    try:
        return codec.decode(data, ctx)
    finally:
        close_unused_fds(fds)


def forward_fds(fds: list[int], channel: socket.socket | None) -> None:
    """Pass received fds on to another peer (actor-to-actor), then close ours."""
    try:
        if fds:
            if channel is None:
                raise TransportError("the destination has no side channel")
            send_fds(channel, fds)
    finally:
        close_unused_fds(fds)
