"""file: the fallback where shared memory is missing, small or absent (macOS).

The bytes are copied into a file in a private directory that is unlinked (or
never named: O_TMPFILE) before anyone else could see it, and the open fd is
handed over exactly like an shm segment. One copy; same lifetime guarantees.
Never pooled: every export is a fresh file, so no peer is ever handed memory
another peer maps.
"""

from __future__ import annotations

import tempfile
from typing import Any

from . import _segments
from ._base import Exported, Imported, Region, Transport

__all__ = ["FileTransport"]


class FileTransport(Transport):
    name = "file"

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory or tempfile.gettempdir()

    def export(self, region: Region, peer: int) -> Exported:
        if region.shared is not None:  # already an fd: send it as is
            return _segments.export_shared(region)
        fd = _segments.create_file(region.nbytes, self.directory)
        return _segments.export_copy(region, fd, memfd=False)

    def import_(self, handle: Any, fds: list[int], peer: int) -> Imported:
        return _segments.import_fd(handle, fds)
