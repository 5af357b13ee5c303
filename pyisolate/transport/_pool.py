"""The shm transport's segment pool: copies go into memfds that were already
paid for.

Why: on Linux a fresh memfd costs about 1 ms per MiB to fill (the kernel
allocates and zeroes every page on first touch), several times the copy itself.
A pooled segment keeps its pages and the sender's writable mapping, so the
next copy into it runs at memory speed.

Safety, in the order it matters:

* A segment is sealed against shrinking and growing, and with
  ``F_SEAL_FUTURE_WRITE`` (like allocator memory): only the pool's own
  mapping may write it. A receiver still refuses any memfd that is not sealed
  so (:func:`._segments.import_fd`).
* A receiver maps copy-on-write, but pages it did not write show the file: the
  pool writes a segment again only after every receiver said it dropped its
  mapping (``{"t": "shm", "op": "release", "ids": [...]}``, sent by the
  receiver's session flush, never by a finalizer). A segment sent to several
  peers waits for all of them (a count per peer).
* A peer that dies releases what it held (its mappings died with it);
  ``close()`` frees everything. Past the byte cap, idle segments are freed
  first, then the oldest outstanding ones are *forgotten* (the pool closes its
  fd; the receivers' mappings keep the memory alive and it is never reused).
"""

from __future__ import annotations

import collections
import itertools
import mmap
import os
import threading
import weakref

import attrs

from ..errors import TransportError
from . import _segments
from ._base import Exported, Region

__all__ = ["DEFAULT_POOL_BYTES", "ENV_POOL_BYTES", "SegmentPool", "bucket_size"]

ENV_POOL_BYTES = "PYISOLATE_SHM_POOL_BYTES"
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
    holders: collections.Counter[int] = attrs.Factory(collections.Counter)


class SegmentPool:
    """Pooled sealed memfds of one sender; see the module docstring."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = default_pool_bytes() if max_bytes is None else max_bytes
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.segments: dict[int, _Segment] = {}  # insertion order: oldest first
        self._idle: dict[int, list[_Segment]] = collections.defaultdict(list)
        self.bytes = 0  # all segments the pool holds, idle or lent
        self.created = 0
        self._finalizer = weakref.finalize(self, SegmentPool._free_all, self.segments)

    def fits(self, nbytes: int) -> bool:
        return 0 < bucket_size(nbytes) <= self.max_bytes

    def idle_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._idle.values())

    def export(self, region: Region, peer: int) -> Exported:
        """Copy ``region`` into a pooled segment lent to ``peer``."""
        size = bucket_size(region.nbytes)
        seg = self._take(size)
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
        with self._lock:
            seg.holders[peer] += 1
        owner = _segments.FdOwner(dup)
        return Exported({"off": 0, "n": region.nbytes, "id": seg.id}, [dup], [owner])

    def release(self, peer: int, ids: list[int]) -> None:
        """``peer`` dropped its mappings of ``ids`` (unknown ids are ignored)."""
        with self._lock:
            for seg_id in ids:
                seg = self.segments.get(seg_id) if type(seg_id) is int else None
                if seg is None or seg.holders[peer] <= 0:
                    continue
                seg.holders[peer] -= 1
                if seg.holders[peer] == 0:
                    del seg.holders[peer]
                if not seg.holders:
                    self._idle[seg.size].append(seg)

    def peer_died(self, peer: int) -> None:
        self.release_all(peer)

    def release_all(self, peer: int) -> None:
        with self._lock:
            for seg in self.segments.values():
                if seg.holders.pop(peer, 0) and not seg.holders:
                    self._idle[seg.size].append(seg)

    def close(self) -> None:
        with self._lock:
            self._idle.clear()
            self.bytes = 0
        self._finalizer()

    # -- internals ----------------------------------------------------------------

    def _take(self, size: int) -> _Segment:
        with self._lock:
            idle = self._idle.get(size)
            if idle:
                return idle.pop()
            self._make_room(size)
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
        seg = _Segment(next(self._ids), fd, size, mm)
        with self._lock:
            self.segments[seg.id] = seg
            self.created += 1
        return seg

    def _give_back(self, seg: _Segment) -> None:
        with self._lock:
            if self.segments.get(seg.id) is seg and not seg.holders:
                self._idle[seg.size].append(seg)

    def _make_room(self, size: int) -> None:
        """Free idle segments, then forget the oldest lent ones, until ``size``
        more bytes fit under the cap (lock held)."""
        for idle in self._idle.values():
            while idle and self.bytes + size > self.max_bytes:
                self._drop(idle.pop())
        for seg in list(self.segments.values()):
            if self.bytes + size <= self.max_bytes:
                break
            self._drop(seg)

    def _drop(self, seg: _Segment) -> None:
        if self.segments.pop(seg.id, None) is None:
            return
        idle = self._idle.get(seg.size)
        if idle and seg in idle:
            idle.remove(seg)
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
