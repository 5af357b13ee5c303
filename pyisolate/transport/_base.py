"""The transport interface: how one contiguous run of tensor bytes crosses to a peer.

A transport never sees tensors, dtypes or shapes: the tensor codec
(:mod:`._tensors`) reduces every tensor, array or buffer to a :class:`Region`
(bytes to move, plus what is known about where they already live), and rebuilds
the value from what :meth:`Transport.import_` returns. Keeping the interface this
small is what lets every implementation pass one conformance suite
(:mod:`pyisolate.transport.testing`).

Lifetime rule shared by all implementations: the *consumer* side frees what it
imported when the imported object is garbage-collected; a transport that must
tell the producer (CUDA IPC) does so through :class:`ControlSink`.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DEFAULT_INLINE_THRESHOLD",
    "ControlSink",
    "Exported",
    "Imported",
    "Region",
    "SharedSegment",
    "Transport",
]

#: Below this many bytes a tensor (or a bytes value) goes inside the envelope:
#: measured on a 2-core box (benchmarks/bench_tensors.py), a memfd round trip
#: costs about as much as copying ~64 KiB twice. Here, not in ``._session``,
#: so that the lazy session can answer it without importing the transports.
DEFAULT_INLINE_THRESHOLD = 64 * 1024


@attrs.frozen
class SharedSegment:
    """Bytes that already live in a file-descriptor-backed mapping this process
    may send as is (no copy): ``fd`` stays owned by the segment registry."""

    fd: int
    offset: int  # where the region starts inside the file


@attrs.frozen
class Region:
    """A contiguous run of bytes to move.

    ``write_to(buf)`` copies exactly ``nbytes`` bytes into a writable buffer (it
    is the one copy an ordinary tensor costs). ``shared`` is set when the bytes
    already sit in a sendable segment; ``storage`` is the torch storage for
    device memory (``device`` other than ``"cpu"``), which only CUDA IPC uses.
    ``owner`` is kept alive until the message has been sent.
    """

    nbytes: int
    write_to: Callable[[memoryview], None]
    device: str = "cpu"
    shared: SharedSegment | None = None
    storage: Any = None
    owner: Any = None


@attrs.frozen
class Exported:
    """What an export produced: a msgpack-able ``handle`` and the ``fds`` that must
    travel beside the envelope (in this order). ``keepalive`` must outlive the
    send; dropping it closes any fd the export created."""

    handle: Any
    fds: list[int] = attrs.Factory(list)
    keepalive: list[Any] = attrs.Factory(list)


@attrs.frozen
class Imported:
    """What an import produced.

    CPU transports give ``buffer``: a writable buffer (copy-on-write: writes stay
    in this process) whose bytes ``[offset, offset + nbytes)`` are the region.
    Device transports give ``storage`` (a torch ``UntypedStorage``) instead.
    """

    nbytes: int
    buffer: Any = None
    offset: int = 0
    storage: Any = None


class ControlSink(Protocol):
    """Where a transport sends protocol messages to a peer (the session)."""

    def send_control(self, peer: int, body: Any) -> None: ...


class Transport(abc.ABC):
    """One way of moving bytes. Subclasses live one per module."""

    #: The name ``PYISOLATE_TRANSPORT`` uses.
    name: ClassVar[str]

    def accepts(self, device: str) -> bool:
        """Whether this transport can move memory of ``device`` without staging
        it through the CPU (CPU-only by default)."""
        return device == "cpu"

    @abc.abstractmethod
    def export(self, region: Region, peer: int) -> Exported:
        """Make ``region`` importable by ``peer``; raises TransportError."""

    @abc.abstractmethod
    def import_(self, handle: Any, fds: list[int], peer: int) -> Imported:
        """Rebuild what ``export`` described. ``fds`` are the fds the handle
        names, in order; the transport takes ownership of them (closes them when
        the import is dropped, or at once on error)."""

    def handle_control(self, peer: int, body: Any) -> None:
        """A protocol message from ``peer`` (only CUDA IPC uses them)."""
        return None

    def flush(self) -> None:
        """Send the control messages queued since the last flush (the session
        calls it on each tick, outside any encode)."""
        return None

    def peer_died(self, peer: int) -> None:
        """``peer`` is gone: release everything kept for it or opened from it."""
        return None

    def close(self) -> None:
        """Release everything."""
        return None
