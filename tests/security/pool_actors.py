"""Actors for the shared-memory pool attacks (tests/security/test_pool.py).

A plain module, imported by actor processes as ``security.pool_actors``.
torch is imported inside the methods: the attack needs a received tensor.
"""

from __future__ import annotations

import gc
from typing import Any

import pyisolate
from pyisolate._wire import HOST


def _session() -> Any:
    """This actor's transport session: the one that sends its TRANSPORT
    control messages to the host, as an honest release would."""
    from pyisolate.actors._child import current_server

    return current_server().transport.get()


def _segment_ids(t: Any) -> list[int]:
    """The pooled segment ids behind the tensor ``t`` in this process."""
    from pyisolate.transport import _segments

    entry = _segments.find_mapping(address=t.untyped_storage().data_ptr())
    return [] if entry is None else [seg_id for _hook, _peer, seg_id in entry.origins]


class PoolPeer(pyisolate.Actor):
    """Receives tensors; releases their segments honestly or lies about it."""

    def __init__(self) -> None:
        self.kept: list[Any] = []

    async def keep_and_lie(self, t: Any) -> list[int]:
        """The attack: keep the mapping, tell the host it may reuse the segment."""
        ids = _segment_ids(t)
        self.kept.append(t)
        _session().send_control(HOST, {"t": "shm", "op": "release", "ids": ids})
        return ids

    async def keep(self, t: Any) -> list[int]:
        self.kept.append(t)
        return _segment_ids(t)

    async def kept_sums(self) -> list[float]:
        """What the retained mappings show now."""
        return [float(t.double().sum()) for t in self.kept]

    async def drop_honestly(self) -> None:
        """Drop every mapping, then let the release go out before the reply."""
        self.kept.clear()
        gc.collect()
        _session().flush()

    async def total(self, t: Any) -> float:
        return float(t.double().sum())
