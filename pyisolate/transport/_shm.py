"""shm: anonymous shared memory (memfd) handed over as a file descriptor.

Zero-copy for memory that is already shared (allocator tensors, received
tensors the receiver did not write); otherwise one copy, into a pooled sealed
memfd (:mod:`._pool`) when a control channel can bring its release back, else
into a fresh sealed one. The receiver maps copy-on-write. Nothing is named, so
nothing can be left behind in /dev/shm, whoever dies when.

Control messages (``Kind.TRANSPORT`` bodies, receiver to sender):

* ``{"t": "shm", "op": "release", "ids": [int, ...]}``: this process has no
  mapping of these pooled segments left; batched, sent by :meth:`flush`.

A received pooled segment that this process forwards to a third peer is
pinned: it is never released (that peer's mapping would see the sender's next
copy); its sender frees it only on peer death, close, or eviction.

Releases are advice, never trust: a pooled segment is only ever recycled for
the peer it was lent to (:mod:`._pool`), so a peer that reports a release and
keeps its mapping sees only later data that was meant for it anyway.
"""

from __future__ import annotations

import collections
from typing import Any

from . import _segments
from ._base import ControlSink, Exported, Imported, Region, Transport
from ._pool import SegmentPool

__all__ = ["ShmTransport"]


class ShmTransport(Transport):
    name = "shm"

    def __init__(self, control: ControlSink | None = None, pool_bytes: int | None = None) -> None:
        self._control = control
        #: sender side; None without a control channel (no releases would come)
        self.pool: SegmentPool | None = (
            SegmentPool(pool_bytes) if control is not None and pool_bytes != 0 else None
        )
        self._to_release: collections.deque[tuple[int, int]] = collections.deque()
        self._closed = False

    def export(self, region: Region, peer: int) -> Exported:
        if region.shared is not None:
            entry = _segments.mapping_of_fd(region.shared.fd)
            if entry is not None and entry.origins:
                _segments.pin(entry)
            return _segments.export_shared(region)
        if self.pool is not None and not self._closed and self.pool.fits(region.nbytes):
            return self.pool.export(region, peer)
        fd = _segments.create_memfd(region.nbytes)
        return _segments.export_copy(region, fd, memfd=True)

    def import_(self, handle: Any, fds: list[int], peer: int) -> Imported:
        origin = (self._queue_release, peer) if self._control is not None else None
        return _segments.import_fd(handle, fds, origin)

    def _queue_release(self, peer: int, seg_id: int) -> None:
        if not self._closed:
            self._to_release.append((peer, seg_id))  # deque.append is thread-safe

    def flush(self) -> None:
        """Send the release messages that finalizers queued."""
        by_peer: dict[int, list[int]] = collections.defaultdict(list)
        while self._to_release:
            peer, seg_id = self._to_release.popleft()
            by_peer[peer].append(seg_id)
        if self._control is not None:
            for peer, ids in by_peer.items():
                self._control.send_control(peer, {"t": self.name, "op": "release", "ids": ids})

    def handle_control(self, peer: int, body: Any) -> None:
        if not isinstance(body, dict) or body.get("op") != "release" or self.pool is None:
            return
        ids = body.get("ids")
        if isinstance(ids, list):
            self.pool.release(peer, ids)

    def peer_died(self, peer: int) -> None:
        if self.pool is not None:
            self.pool.peer_died(peer)
        kept = [(p, i) for p, i in list(self._to_release) if p != peer]
        self._to_release.clear()
        self._to_release.extend(kept)

    def close(self) -> None:
        self._closed = True
        if self.pool is not None:
            self.pool.close()
        self._to_release.clear()
