"""What the host tells a new actor process before anything else, and how.

The host writes one length-prefixed msgpack map to the child's stdin: where to
connect, the actor's id and secret token, what to import. Nothing secret goes
on the command line (``ps`` shows it) or in the environment (the actor's code
could read it). Afterwards stdin stays open as a lifeline: when it reaches
end-of-file the host is gone and the actor exits (see ``_child``).
"""

from __future__ import annotations

import os
import struct
from typing import Any

import msgpack

__all__ = ["read_bootstrap", "write_bootstrap"]

_LEN = struct.Struct("!I")
_MAX = 16 * 1024 * 1024


def write_bootstrap(fd: int, data: dict[str, Any]) -> None:
    blob = msgpack.packb(data)
    payload = _LEN.pack(len(blob)) + blob
    view = memoryview(payload)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_bootstrap(fd: int) -> dict[str, Any]:
    header = _read_exactly(fd, _LEN.size)
    (length,) = _LEN.unpack(header)
    if length > _MAX:
        raise ValueError("bootstrap message too large")
    data = msgpack.unpackb(_read_exactly(fd, length))
    if not isinstance(data, dict):
        raise ValueError("bootstrap message is not a map")
    return data


def _read_exactly(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError("host closed the bootstrap pipe")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
