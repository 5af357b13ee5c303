"""The shm transport's segment pool: copies go into memfds that were already
paid for.

Why: on Linux a fresh memfd costs about 1 ms per MiB to fill (the kernel
allocates and zeroes every page on first touch), several times the copy itself.
A pooled segment keeps its pages and the sender's writable mapping, so the
next copy into it runs at memory speed.

Safety, in the order it matters:

* **A segment belongs to the one peer it was first lent to, for good.** A
  receiver maps copy-on-write, so pages it did not write show the file: a
  peer that *says* it released a segment but keeps its mapping reads whatever
  the pool writes there next. So a segment is recycled only for the same peer
  (idle lists are keyed by ``(peer, size)``): a lying peer can only see the
  next tensors that were meant for it anyway, never another peer's. What a
  peer reports is trusted for nothing else: a release of a segment lent to
  someone else, or not lent at all, is ignored.
* A segment is sealed against shrinking and growing, and with
  ``F_SEAL_FUTURE_WRITE`` (like allocator memory): only the pool's own
  mapping may write it. A receiver still refuses any memfd that is not sealed
  so (:func:`._segments.import_fd`).
* Within its peer, a segment is written again only after that peer said it
  dropped its mapping (``{"t": "shm", "op": "release", "ids": [...]}``, sent
  by the receiver's session flush, never by a finalizer).
* A peer that dies frees its segments rather than leaving them idle: a
  mapping of one may live on in a third process it forwarded the fd to, and
  nobody else may be handed it. ``close()`` frees everything.
* The byte cap holds whoever misbehaves. Past it, idle segments are freed
  first (oldest first, whoever's), then lent ones are *forgotten* (the pool
  closes its fd; the receivers' mappings keep the memory alive and it is never
  reused), oldest first from the peer that holds the most bytes: a peer that
  never releases loses its own segments, not its neighbours'.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import weakref
from typing import TYPE_CHECKING

import attrs

from ..environment import SHM_POOL_BYTES
from ..errors import TransportError
from . import _segments
from ._base import Exported, Region

if TYPE_CHECKING:
    import mmap

__all__ = ["DEFAULT_POOL_BYTES", "ENV_POOL_BYTES", "SegmentPool", "bucket_size"]

ENV_POOL_BYTES = SHM_POOL_BYTES
DEFAULT_POOL_BYTES = 1 << 30
MIN_BUCKET = 64 * 1024


def bucket_size(nbytes: int) -> int:
    """``nbytes`` rounded up to a quarter-octave step (at most 25% waste), whole pages."""
    size = max(nbytes, MIN_BUCKET)
    step = 1 << max(size.bit_length() - 3, 0)
    size = (size + step - 1) // step * step
    return (size + _segments.PAGE - 1) // _segments.PAGE * _segments.PAGE


def default_pool_bytes() -> int:
    raw = os.environ.get(ENV_POOL_BYTES)
    if raw is not None:
        try:
            return max(int(raw), 0)
        except ValueError:
            pass
    try:
        st = os.statvfs("/dev/shm")
        return min(DEFAULT_POOL_BYTES, st.f_bavail * st.f_frsize // 4)
    except OSError:
        return DEFAULT_POOL_BYTES


@attrs.define(eq=False)
class _Segment:
    id: int
    fd: int
    size: int
    mm: mmap.mmap
    peer: int  # the only peer this segment is ever lent to
    lent: bool = False


class SegmentPool:
    """Pooled sealed memfds of one sender, each owned by one peer; see the
    module docstring."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = default_pool_bytes() if max_bytes is None else max_bytes
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.segments: dict[int, _Segment] = {}  # insertion order: oldest first
        #: per peer, its segments (oldest first) and their bytes, idle or lent
        self._by_peer: dict[int, dict[int, _Segment]] = {}
        self._peer_bytes: collections.Counter[int] = collections.Counter()
        self._idle: dict[tuple[int, int], list[_Segment]] = collections.defaultdict(list)
        self.bytes = 0  # all segments the pool holds, idle or lent
        self.created = 0
        self._finalizer = weakref.finalize(self, SegmentPool._free_all, self.segments)

    def fits(self, nbytes: int) -> bool:
        return 0 < bucket_size(nbytes) <= self.max_bytes

    def idle_count(self, peer: int | None = None) -> int:
        with self._lock:
            return sum(len(v) for k, v in self._idle.items() if peer is None or k[0] == peer)

    def peer_bytes(self, peer: int) -> int:
        """Bytes of the segments that belong to ``peer`` (idle or lent)."""
        with self._lock:
            return self._peer_bytes.get(peer, 0)

    def export(self, region: Region, peer: int) -> Exported:
        """Copy ``region`` into a pooled segment of ``peer`` and lend it to ``peer``."""
        seg = self._take(bucket_size(region.nbytes), peer)
        try:
            with memoryview(seg.mm) as whole, whole[: region.nbytes] as view:
                region.write_to(view)
            dup = os.dup(seg.fd)
        except BaseException as exc:
            self._give_back(seg)
            if isinstance(exc, (TransportError, KeyboardInterrupt)):
                raise
            raise TransportError(
                f"cannot copy {region.nbytes} bytes into shared memory: {exc!r}"
            ) from None
        owner = _segments.FdOwner(dup)
        return Exported({"off": 0, "n": region.nbytes, "id": seg.id}, [dup], [owner])

    def release(self, peer: int, ids: list[int]) -> None:
        """``peer`` says it dropped its mappings of ``ids``: they may be written
        again, for ``peer`` only. Ids not lent to ``peer`` are ignored."""
        with self._lock:
            for seg_id in ids:
                seg = self.segments.get(seg_id) if type(seg_id) is int else None
                if seg is None or seg.peer != peer or not seg.lent:
                    continue
                seg.lent = False
                self._idle[peer, seg.size].append(seg)

    def peer_died(self, peer: int) -> None:
        """Free every segment of ``peer``: none may go to anyone else."""
        with self._lock:
            for seg in list(self._by_peer.get(peer, {}).values()):
                self._drop(seg)

    def close(self) -> None:
        with self._lock:
            self._idle.clear()
            self._by_peer.clear()
            self._peer_bytes.clear()
            self.bytes = 0
        self._finalizer()

    # -- internals ----------------------------------------------------------------

    def _take(self, size: int, peer: int) -> _Segment:
        """An idle segment of ``peer`` of ``size`` bytes, else a new one, lent."""
        with self._lock:
            idle = self._idle.get((peer, size))
            if idle:
                seg = idle.pop()
                if not idle:
                    del self._idle[peer, size]
                seg.lent = True
                return seg
            self._make_room(size, peer)
            self.bytes += size
        try:
            fd = _segments.create_memfd(size, "pyisolate-pool")
            try:
                mm = _segments.map_shared(fd, size)
            except OSError as exc:
                os.close(fd)
                raise TransportError(f"cannot map {size} bytes of shared memory: {exc}") from None
        except BaseException:
            with self._lock:
                self.bytes -= size
            raise
        _segments.add_seals(fd, _segments.SIZE_SEALS | _segments.F_SEAL_FUTURE_WRITE)
        seg = _Segment(next(self._ids), fd, size, mm, peer, lent=True)
        with self._lock:
            self.segments[seg.id] = seg
            self._by_peer.setdefault(peer, {})[seg.id] = seg
            self._peer_bytes[peer] += size
            self.created += 1
        return seg

    def _give_back(self, seg: _Segment) -> None:
        """An export failed before anything was sent: ``seg`` is idle again."""
        with self._lock:
            if self.segments.get(seg.id) is seg and seg.lent:
                seg.lent = False
                self._idle[seg.peer, seg.size].append(seg)

    def _make_room(self, size: int, peer: int) -> None:
        """Free idle segments, then forget lent ones of the peer holding the
        most (``peer``, who asks, on a tie), until ``size`` more bytes fit
        under the cap (lock held)."""
        if self.bytes + size <= self.max_bytes:
            return
        for seg in list(self.segments.values()):
            if self.bytes + size <= self.max_bytes:
                return
            if not seg.lent:
                self._drop(seg)
        while self.bytes + size > self.max_bytes and self._peer_bytes:
            hog = max(self._peer_bytes, key=lambda p: (self._peer_bytes[p], p == peer))
            self._drop(next(iter(self._by_peer[hog].values())))

    def _drop(self, seg: _Segment) -> None:
        """Free ``seg`` (lock held): idle, it is unmapped; lent, it is forgotten
        and lives on only in its receiver's mapping."""
        if self.segments.pop(seg.id, None) is None:
            return
        if not seg.lent:
            idle = self._idle[seg.peer, seg.size]
            idle.remove(seg)
            if not idle:
                del self._idle[seg.peer, seg.size]
        own = self._by_peer[seg.peer]
        del own[seg.id]
        self._peer_bytes[seg.peer] -= seg.size
        if not own:
            del self._by_peer[seg.peer]
            del self._peer_bytes[seg.peer]
        self.bytes -= seg.size
        _free(seg)

    @staticmethod
    def _free_all(segments: dict[int, _Segment]) -> None:
        for seg in list(segments.values()):
            _free(seg)
        segments.clear()


def _free(seg: _Segment) -> None:
    try:
        seg.mm.close()
    except BufferError:  # a copy into it is in flight elsewhere: let GC unmap it
        pass
    os.close(seg.fd)
