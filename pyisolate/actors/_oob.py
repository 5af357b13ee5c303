"""Out-of-band file descriptors beside envelopes, for the host and for actors.

Tensors and large buffers travel as file descriptors (memfd, unlinked files)
on each actor's side channel, a Unix socketpair, while their small handles
ride in the envelope. The sender passes the fds *before* the ZeroMQ message
whose header counts them, so the receiver always finds them waiting. The
codec's extensions live in :mod:`pyisolate.transport`; this module only moves
fds and keeps the ownership rules in one place.
"""

from __future__ import annotations

import importlib
import socket
from collections.abc import Callable
from typing import Any

from .._wire import Codec, DecodeContext, EncodeContext, default_registry
from ..errors import ProtocolError, TransportError
from ..transport._base import DEFAULT_INLINE_THRESHOLD
from ..transport._fdpass import close_unused_fds, recv_fds, send_fds

__all__ = [
    "LazySession",
    "close_unused_fds",
    "decode_with_fds",
    "encode_with_fds",
    "forward_fds",
    "receive_fds",
]

# Tensors, arrays, OutOfBand buffers, large bytes and numpy scalars travel
# through every codec. They are registered by name with stubs that import the
# transport on first use, so an actor that never moves a tensor never imports
# it (nor torch, nor numpy).
_EXTENSIONS = {
    # qualified type name: (code, encoder name, decoder name) in transport._tensors
    "torch.Tensor": (8, "_encode_tensor", "_decode_tensor"),
    "numpy.ndarray": (9, "_encode_ndarray", "_decode_ndarray"),
    "pyisolate.transport._tensors.OutOfBand": (10, "_encode_oob", "_decode_oob"),
    "pyisolate._wire._codec.LargeBytes": (11, "_encode_large_bytes", "_decode_large_bytes"),
    "numpy.generic": (12, "_encode_np_scalar", "_decode_np_scalar"),
}


def _tensors() -> Any:
    return importlib.import_module("pyisolate.transport._tensors")


def _stub(function: str) -> Callable[[Any, Any], Any]:
    def call(value: Any, ctx: Any) -> Any:
        return getattr(_tensors(), function)(value, ctx)

    call.__name__ = function
    return call


_STUBS = {name: (code, _stub(enc), _stub(dec)) for name, (code, enc, dec) in _EXTENSIONS.items()}
for _name, (_code, _enc, _dec) in _STUBS.items():
    default_registry.register(_name, _code, _enc, _dec)


class LazySession:
    """Stands for a :class:`~pyisolate.transport.TransportSession` that is made
    on first use (the first tensor sent or received)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._real: Any = None

    @property
    def started(self) -> bool:
        return self._real is not None

    @property
    def inline_threshold(self) -> int:
        """Asked by the codec of every large message: answered without
        starting the session (the factory makes one with the default)."""
        if self._real is None:
            return DEFAULT_INLINE_THRESHOLD
        return int(self._real.inline_threshold)

    def get(self) -> Any:
        if self._real is None:
            self._real = self._factory()
        return self._real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


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
