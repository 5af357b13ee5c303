"""A supervisor's watchers: one per incarnation of each child, and a heartbeat.

``watch_actor`` and ``watch_nested`` wait for the end of one incarnation and
hand it to the supervisor as normal or abnormal; ``heartbeat_loop`` pings an
actor through its event loop and kills it as hung after ``tolerance`` missed
heartbeats in a row (its watcher then sees an abnormal exit).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import ActorDiedError, ProtocolError

if TYPE_CHECKING:
    from ._supchild import Slot
    from ._supervisor import SupervisorHandle
    from ._supspec import Heartbeat

__all__ = ["heartbeat_loop", "watch_actor", "watch_nested"]

log = logging.getLogger("pyisolate.supervisor")


async def watch_actor(sup: SupervisorHandle, slot: Slot, incarnation: int, record: Any) -> None:
    await record.process.exited.wait()
    # The runtime's _on_exit has run by now (same task, no await between).
    normal = record.state == "stopped" or (
        record.process.returncode == 0 and not isinstance(record.death, ProtocolError)
    )
    cause = (
        None
        if normal
        else record.death or ActorDiedError(f"actor {record.name!r} exited", actor=record.name)
    )
    await sup._on_exit(slot, incarnation, normal, cause)


async def watch_nested(
    sup: SupervisorHandle, slot: Slot, incarnation: int, nested: SupervisorHandle
) -> None:
    await nested._done.wait()
    if nested.failure is not None:
        sup.stats.escalations += 1
    await sup._on_exit(slot, incarnation, nested.failure is None, nested.failure)


async def heartbeat_loop(
    sup: SupervisorHandle, slot: Slot, incarnation: int, record: Any, hb: Heartbeat
) -> None:
    misses = 0
    while True:
        await anyio.sleep(hb.interval)
        if slot.incarnation != incarnation or record.state != "running":
            return
        try:
            await sup.runtime.ping(record.ref, hb.timeout)
            misses = 0
        except TimeoutError:
            misses += 1
        except Exception:
            return  # it died or stopped: the watcher handles that
        if misses >= hb.tolerance and record.state == "running":
            sup.stats.hangs += 1
            record.death = ActorDiedError(
                f"actor {record.name!r} missed {misses} heartbeats "
                f"({hb.timeout} s each): killed as hung",
                actor=record.name,
                exitcode=-9,
            )
            log.error(
                "supervisor %r: child %r is hung (%d heartbeats missed): killing it",
                sup.name,
                slot.id,
                misses,
            )
            record.process.kill()
            return
