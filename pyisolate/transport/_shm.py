"""shm: anonymous shared memory (memfd) handed over as a file descriptor.

Zero-copy for memory that is already shared (allocator tensors, received
tensors the receiver did not write); one copy into a fresh sealed memfd
otherwise. The receiver maps copy-on-write. Nothing is named, so nothing can
be left behind in /dev/shm, whoever dies when.
"""

from __future__ import annotations

from typing import Any

from . import _segments
from ._base import Exported, Imported, Region, Transport

__all__ = ["ShmTransport"]


class ShmTransport(Transport):
    name = "shm"

    def export(self, region: Region, peer: int) -> Exported:
        if region.shared is not None:
            return _segments.export_shared(region)
        fd = _segments.create_memfd(region.nbytes)
        return _segments.export_copy(region, fd, memfd=True)

    def import_(self, handle: Any, fds: list[int], peer: int) -> Imported:
        return _segments.import_fd(handle, fds)
