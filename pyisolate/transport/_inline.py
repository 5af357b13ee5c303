"""inline: the bytes travel inside the envelope.

Used for small tensors (below ``inline_threshold``), where creating, sending
and mapping a segment costs more than copying the bytes twice, and as the last
resort where no fd-passing transport exists. Bounded by the codec's frame limit.
"""

from __future__ import annotations

from typing import Any

from ..errors import TransportError
from ._base import Exported, Imported, Region, Transport

__all__ = ["InlineTransport"]

#: Inline bytes share the envelope's 64 MiB frame limit with everything else.
MAX_INLINE = 48 * 1024 * 1024


class InlineTransport(Transport):
    name = "inline"

    def __init__(self, max_bytes: int = MAX_INLINE) -> None:
        self.max_bytes = max_bytes

    def export(self, region: Region, peer: int) -> Exported:
        if region.nbytes > self.max_bytes:
            raise TransportError(
                f"{region.nbytes} bytes are too many for the inline transport "
                f"(limit {self.max_bytes}); use the shm or file transport"
            )
        data = bytearray(region.nbytes)
        region.write_to(memoryview(data))
        return Exported({"b": data})

    def import_(self, handle: Any, fds: list[int], peer: int) -> Imported:
        data = handle.get("b") if isinstance(handle, dict) else None
        if not isinstance(data, (bytes, bytearray)) or fds:
            raise TransportError("malformed inline handle")
        # A private writable copy: the receiver owns what it received.
        return Imported(nbytes=len(data), buffer=bytearray(data))
