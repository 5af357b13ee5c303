"""One message's transfers: how an encoder hands bytes to a transport and a
decoder takes them back, checked against what was actually received.

Shared by the codec extensions (``_tensors`` for torch, out-of-band buffers
and large bytes; ``_arrays`` for numpy): per-message state (what this message
already sent or received, so two views of one storage travel once), the
choice of transport, and the bounds checks that keep a hostile peer's handle
from reading outside the memory it sent.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import attrs
import msgpack

from ..errors import ProtocolError, TransportError
from ._fdpass import MAX_FDS
from ._lazy_session import LazySession
from ._session import TransportSession

if TYPE_CHECKING:
    from ._base import Exported, Imported, Region, Transport

# Used by the codec extensions of this package only (``_tensors``, ``_arrays``).
__all__: list[str] = []

_MAX_DIMS = 64


# -- per-message state ------------------------------------------------------------
#
# Contexts may outlive their message (a codec may keep the last one), so
# nothing here may hold memory or fds through them: the encode state rides in
# ``ctx.keepalive`` (cleared by the core once the message is sent) and the
# decode state holds imported buffers weakly.


@attrs.define
class _Sent:
    by_storage: dict[tuple[str, int], dict[str, Any]] = attrs.Factory(dict)


@attrs.define
class _Received:
    fds: list[int]
    by_fd: dict[int, tuple[weakref.ref[Any], Imported]] = attrs.Factory(dict)


_received: dict[int, tuple[weakref.ref[Any], _Received]] = {}


def _sent_state(ctx: Any) -> _Sent:
    keepalive = ctx.keepalive
    if keepalive and type(keepalive[0]) is _Sent:
        return keepalive[0]  # type: ignore[no-any-return]
    state = _Sent()
    keepalive.insert(0, state)
    return state


def _received_state(ctx: Any) -> _Received:
    key = id(ctx)
    found = _received.get(key)
    if found is not None and found[0]() is ctx and found[1].fds is getattr(ctx, "fds", None):
        return found[1]

    def forget(_ref: Any) -> None:
        _received.pop(key, None)

    state = _Received(ctx.fds)
    _received[key] = (weakref.ref(ctx, forget), state)
    return state


def _session(ctx: Any) -> TransportSession:
    """The context's session (started now if it is the runtime's lazy one)."""
    session = ctx.session
    if isinstance(session, LazySession):
        return session.get()
    if isinstance(session, TransportSession):
        return session
    raise TransportError(
        "no transport session for this message: give EncodeContext/DecodeContext "
        "session=pyisolate.transport.lowlevel.TransportSession(...) (the runtime always does)"
    )


def _pick(ctx: Any, device: str, nbytes: int) -> Transport:
    """The transport for this region: no fd-passing one once a message carries
    as many fds as one sendmsg can (inline raises if the rest is too big)."""
    return _session(ctx).choose(device, nbytes, ctx.peer, fds_left=len(ctx.fds) < MAX_FDS)


def _passes_fds(ctx: Any, transport: Transport) -> bool:
    return _session(ctx).fd_passing(transport)


def _send(
    ctx: Any, transport: Transport, region: Region, dedupe: int | None = None
) -> dict[str, Any]:
    """Move ``region`` with ``transport``; returns the transfer record that the
    envelope carries. Zero-copy exports of one storage are made once per message."""
    state = _sent_state(ctx)
    key = (transport.name, dedupe) if dedupe is not None else None
    if key is not None and key in state.by_storage:
        return state.by_storage[key]
    exported: Exported = _session(ctx).export(transport, region, ctx.peer)
    record = {
        "t": transport.name,
        "h": exported.handle,
        "fd": len(ctx.fds),
        "nfd": len(exported.fds),
    }
    ctx.fds.extend(exported.fds)
    ctx.keepalive.extend(exported.keepalive)
    ctx.keepalive.append(region.owner)
    if key is not None:
        state.by_storage[key] = record
    return record


def _receive(ctx: Any, record: Any) -> Imported:
    """Import a transfer record, taking the fds it names from ``ctx.fds``
    (replaced by -1: the core closes whatever fds remain afterwards)."""
    if not isinstance(record, dict):
        raise ProtocolError("malformed transfer record")
    first, count = record.get("fd"), record.get("nfd")
    if type(first) is not int or type(count) is not int or first < 0 or count < 0:
        raise ProtocolError("malformed transfer record")
    if first + count > len(ctx.fds):
        raise ProtocolError(
            f"transfer names fds {first}..{first + count} but {len(ctx.fds)} arrived"
        )
    state = _received_state(ctx)
    if count and first in state.by_fd:  # a second view of a storage already imported
        buffer_ref, shell = state.by_fd[first]
        buffer = buffer_ref()
        if buffer is not None:
            return attrs.evolve(shell, buffer=buffer)
        raise ProtocolError("a shared segment was dropped while its message was decoded")
    fds = ctx.fds[first : first + count]
    if any(fd < 0 for fd in fds):
        raise ProtocolError("a file descriptor was named by two transfers")
    ctx.fds[first : first + count] = [-1] * count
    imported = _session(ctx).import_(str(record.get("t")), record.get("h"), list(fds), ctx.peer)
    if count and imported.buffer is not None:
        # weakly: the Imported itself (it holds the buffer) is rebuilt on a hit
        state.by_fd[first] = (weakref.ref(imported.buffer), attrs.evolve(imported, buffer=None))
    return imported


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(payload: bytes) -> dict[str, Any]:
    body = msgpack.unpackb(payload, raw=False, max_bin_len=64 << 20)
    if not isinstance(body, dict):
        raise ProtocolError("malformed tensor payload")
    return body


def _ints(value: Any, what: str, limit: int = _MAX_DIMS) -> list[int]:
    if (
        not isinstance(value, list)
        or len(value) > limit
        or not all(type(v) is int and v >= 0 for v in value)
    ):
        raise ProtocolError(f"malformed {what}")
    return value


def _extent(shape: list[int], strides: list[int]) -> int:
    """Elements spanned from the first to the last element, inclusive."""
    if any(n == 0 for n in shape):
        return 0
    return sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + 1


def _check_bounds(imported: Imported, elem_offset: int, span: int, itemsize: int) -> None:
    if span and (elem_offset < 0 or (elem_offset + span) * itemsize > imported.nbytes):
        raise ProtocolError("tensor layout reaches beyond the memory that was sent")
