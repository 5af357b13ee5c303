"""Learn an actor's real process id, even from inside a pid namespace.

A sandboxed actor runs in its own pid namespace behind bubblewrap, so the pid
the host launched is bwrap's, and the actor's own ``getpid()`` is meaningless
outside. The actor sends one SCM_CREDENTIALS message on its side channel; the
kernel checks the credentials and translates the pid into the receiver's
namespace. The host reads it once, then turns credential passing off so later
records on the channel (tensor file descriptors) carry no extra ancillary data.
"""

from __future__ import annotations

import os
import socket
import struct

__all__ = ["read_credentials", "send_credentials"]

_MAGIC = b"PYISOPID"
_UCRED = struct.Struct("3i")


def send_credentials(sock: socket.socket) -> None:
    if not hasattr(socket, "SCM_CREDENTIALS"):
        return
    creds = _UCRED.pack(os.getpid(), os.getuid(), os.getgid())
    sock.sendmsg([_MAGIC], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)])


def enable_credentials(sock: socket.socket) -> None:
    if hasattr(socket, "SO_PASSCRED"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)


def read_credentials(sock: socket.socket) -> int | None:
    """The sender's pid as the host sees it, or None if it is not there (yet)."""
    if not hasattr(socket, "SCM_CREDENTIALS"):
        return None
    try:
        data, ancillary, _flags, _addr = sock.recvmsg(
            len(_MAGIC), socket.CMSG_SPACE(_UCRED.size), socket.MSG_DONTWAIT
        )
    except (BlockingIOError, OSError):
        return None
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)
    if data != _MAGIC:
        return None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid, _uid, _gid = _UCRED.unpack(payload[: _UCRED.size])
            return int(pid)
    return None
