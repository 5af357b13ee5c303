"""FakeTransport: an in-process transport for tests (httpcore's mock backends).

Both sides of a test share one instance; exported bytes wait in a dict until
imported. It records every call, so tests of the layers above can assert what
crossed without processes, fds or shared memory.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs

from ..errors import TransportError
from ._base import Exported, Imported, Region, Transport

__all__ = ["FakeTransport"]


@attrs.define
class FakeTransport(Transport):
    """``pending`` holds exported, not yet imported bytes; ``log`` the calls."""

    name = "fake"
    pending: dict[int, bytes] = attrs.Factory(dict)
    log: list[tuple[str, int, int]] = attrs.Factory(list)  # (op, peer, nbytes)
    _ids: itertools.count[int] = attrs.Factory(itertools.count)

    def export(self, region: Region, peer: int) -> Exported:
        data = bytearray(region.nbytes)
        region.write_to(memoryview(data))
        key = next(self._ids)
        self.pending[key] = bytes(data)
        self.log.append(("export", peer, region.nbytes))
        return Exported({"id": key})

    def import_(self, handle: Any, fds: list[int], peer: int) -> Imported:
        try:
            data = self.pending.pop(int(handle["id"]))
        except (KeyError, TypeError, ValueError):
            raise TransportError(f"FakeTransport has no export {handle!r}") from None
        self.log.append(("import", peer, len(data)))
        return Imported(nbytes=len(data), buffer=bytearray(data))

    def peer_died(self, peer: int) -> None:
        self.log.append(("peer_died", peer, 0))

    def close(self) -> None:
        self.pending.clear()
