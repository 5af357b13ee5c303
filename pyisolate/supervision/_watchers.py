"""A supervisor's watchers: one per incarnation of each child, and a heartbeat.

They run in the supervisor's task group (cancelled when it stops), one set
per incarnation, so a stale watcher can only report an incarnation the
supervisor already handled (it ignores those). ``watch_actor`` and
``watch_nested`` wait for the end of one incarnation and hand it to the
supervisor as normal or abnormal; ``heartbeat_loop`` pings an actor through
its event loop and kills it as hung after ``tolerance`` missed heartbeats in
a row (its watcher then sees an abnormal exit).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from ..errors import ActorDiedError, ProtocolError

if TYPE_CHECKING:
    from ._host import Incarnation
    from ._policy import Heartbeat
    from ._running import RunningSupervisor
    from ._slot import Slot

__all__ = ["heartbeat_loop", "watch_actor", "watch_nested"]

log = logging.getLogger("pyisolate.supervisor")


async def watch_actor(
    sup: RunningSupervisor, slot: Slot, incarnation: int, current: Incarnation
) -> None:
    await current.wait_exited()
    normal = current.state == "stopped" or (
        current.returncode == 0 and not isinstance(current.death, ProtocolError)
    )
    cause = (
        None
        if normal
        else current.death or ActorDiedError(f"actor {current.name!r} exited", actor=current.name)
    )
    await sup._child_exited(slot, incarnation, normal, cause)


async def watch_nested(
    sup: RunningSupervisor, slot: Slot, incarnation: int, nested: RunningSupervisor
) -> None:
    await nested._done.wait()
    if nested.failure is not None:
        sup.stats.escalations += 1
    await sup._child_exited(slot, incarnation, nested.failure is None, nested.failure)


async def heartbeat_loop(
    sup: RunningSupervisor, slot: Slot, incarnation: int, current: Incarnation, hb: Heartbeat
) -> None:
    misses = 0
    while True:
        await anyio.sleep(hb.interval)
        if slot.incarnation != incarnation or current.state != "running":
            return
        try:
            await current.ping(hb.timeout)
            misses = 0
        except TimeoutError:
            misses += 1
        except Exception:
            return  # it died or stopped: the watcher handles that
        if misses >= hb.tolerance and current.state == "running":
            sup.stats.hangs += 1
            log.error(
                "supervisor %r: child %r is hung (%d heartbeats missed): killing it",
                sup.name,
                slot.id,
                misses,
            )
            current.kill(
                ActorDiedError(
                    f"actor {current.name!r} missed {misses} heartbeats "
                    f"({hb.timeout} s each): killed as hung",
                    actor=current.name,
                    exitcode=-9,
                )
            )
            return
