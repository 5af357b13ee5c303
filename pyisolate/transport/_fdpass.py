"""Passing file descriptors over a Unix socket (SCM_RIGHTS).

The channel (ZeroMQ) cannot carry fds, so each actor has a socketpair beside
it: the sender calls :func:`send_fds` *before* sending the ZeroMQ message whose
header says ``nfds``; the receiver calls :func:`recv_fds` with that count
before decoding. One record per message: ``[u16 nfds][u16 len(tag)][tag]``
with the fds attached to the first byte, so that on a SOCK_STREAM socket the
records never run together (the kernel does not merge fds across sends).
"""

from __future__ import annotations

import array
import os
import socket
import struct

from ..errors import TransportError

__all__ = ["MAX_FDS", "close_unused_fds", "recv_fds", "send_fds"]

MAX_FDS = 253  # SCM_MAX_FD: the most one sendmsg may carry
_HEADER = struct.Struct("!HH")


def send_fds(sock: socket.socket, fds: list[int], tag: bytes = b"") -> None:
    """Send ``fds`` (borrowed: the caller still owns and closes them) and ``tag``."""
    if len(fds) > MAX_FDS:
        raise TransportError(f"cannot send {len(fds)} file descriptors at once (limit {MAX_FDS})")
    if len(tag) > 0xFFFF:
        raise TransportError("fd record tag too long")
    data = _HEADER.pack(len(fds), len(tag)) + tag
    ancillary = (
        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
    )
    try:
        sent = sock.sendmsg([data], ancillary)
        if sent < len(data):  # stream socket under pressure: the rest carries no fds
            sock.sendall(data[sent:])
    except OSError as exc:
        raise TransportError(f"cannot send file descriptors: {exc}") from None


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = b""
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise TransportError("fd socket closed in the middle of a record")
        chunks += chunk
    return chunks


def recv_fds(sock: socket.socket, max_fds: int) -> tuple[bytes, list[int]]:
    """Receive one record: ``(tag, fds)``; the caller owns the fds.

    Raises TransportError (closing any fds that did arrive) when the peer closed
    the socket, sent more fds than ``max_fds``, or the kernel truncated them.
    """
    fds: list[int] = []
    size = socket.CMSG_SPACE(max(max_fds, 1) * array.array("i").itemsize)
    # A packet socket delivers a record whole (what one read leaves is lost); a
    # stream socket must not be read past this record.
    stream = sock.type == socket.SOCK_STREAM
    first_read = _HEADER.size if stream else _HEADER.size + 0xFFFF
    try:
        data, ancillary, flags, _addr = sock.recvmsg(first_read, size, socket.MSG_CMSG_CLOEXEC)
    except OSError as exc:
        raise TransportError(f"cannot receive file descriptors: {exc}") from None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % array.array("i").itemsize
            fds.extend(array.array("i", payload[:usable]))
    if flags & socket.MSG_CTRUNC:
        _close_all(fds)
        raise TransportError(f"file descriptors were truncated (more than {max_fds} sent)")
    if not data:
        _close_all(fds)
        raise TransportError("fd socket closed by the peer")
    try:
        if stream:
            data += _recv_exact(sock, _HEADER.size - len(data))
        if len(data) < _HEADER.size:
            raise TransportError("short fd record")
        nfds, tag_len = _HEADER.unpack(data[: _HEADER.size])
        if stream:
            tag = _recv_exact(sock, tag_len)
        else:
            tag = data[_HEADER.size :]
            if len(tag) != tag_len:
                raise TransportError("fd record of the wrong length")
    except TransportError:
        _close_all(fds)
        raise
    except OSError as exc:
        _close_all(fds)
        raise TransportError(f"cannot receive file descriptors: {exc}") from None
    if nfds != len(fds):
        _close_all(fds)
        raise TransportError(f"expected {nfds} file descriptors, received {len(fds)}")
    return tag, fds


def close_unused_fds(fds: list[int]) -> None:
    """Close the fds of a received message that no decoder took (helper for the core)."""
    for i, fd in enumerate(fds):
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
            fds[i] = -1
