"""FakeTransport: a transport for tests (httpcore's mock backends).

The bytes travel inside the handle (so it works between processes, bounded by
the envelope's size like inline), and every instance records each call in
``log``: tests of the layers above assert what crossed, and by which
transport, without shared memory or fds. Importing this module registers it
(never chosen unless forced or injected): a receiving process must import it,
e.g. an actor from its module, before a fake transfer reaches it.

``Runtime(transports=[FakeTransport()])`` makes the host send every tensor,
array and large buffer by it.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs

from ..errors import TransportError
from ._base import Exported, Imported, Region, Transport
from ._registry import TransportSpec, register_transport

__all__ = ["FakeTransport"]


@attrs.define
class FakeTransport(Transport):
    """``log`` holds ``(op, peer, nbytes)`` for each export, import, death."""

    name = "fake"
    log: list[tuple[str, int, int]] = attrs.Factory(list)
    _ids: itertools.count[int] = attrs.Factory(itertools.count)

    def export(self, region: Region, peer: int) -> Exported:
        data = bytearray(region.nbytes)
        region.write_to(memoryview(data))
        self.log.append(("export", peer, region.nbytes))
        return Exported({"id": next(self._ids), "b": bytes(data)})

    def import_(self, handle: Any, fds: list[int], peer: int) -> Imported:
        data = handle.get("b") if isinstance(handle, dict) else None
        if not isinstance(data, bytes) or type(handle.get("id")) is not int or fds:
            raise TransportError(f"malformed FakeTransport handle {handle!r}")
        self.log.append(("import", peer, len(data)))
        return Imported(nbytes=len(data), buffer=bytearray(data))

    def peer_died(self, peer: int) -> None:
        self.log.append(("peer_died", peer, 0))


register_transport(TransportSpec("fake", lambda _session: FakeTransport()))
