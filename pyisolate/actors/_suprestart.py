"""How a supervisor restarts: intensity, strategies, start order, backoff.

Called by :class:`SupervisorHandle` with its lock held: ``restart`` handles
one failed child by the supervisor's strategy (one_for_one, one_for_all,
rest_for_one), starting the affected children again in start order; a child
that fails to start is retried after its backoff; past the restart intensity
the supervisor gives up (``give_up``): it stops its children and fails with
RestartIntensityError.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

import anyio

from ..errors import RestartIntensityError
from ._supspec import Restart, Strategy

if TYPE_CHECKING:
    from ._supchild import Slot
    from ._supervisor import SupervisorHandle

__all__ = ["give_up", "restart"]

log = logging.getLogger("pyisolate.supervisor")


def allow_restart(sup: SupervisorHandle) -> bool:
    """Record a restart; False if that exceeds the intensity."""
    now = anyio.current_time()
    sup._restarts.append(now)
    while sup._restarts and sup._restarts[0] < now - sup.spec.period:
        sup._restarts.popleft()
    return len(sup._restarts) <= sup.spec.intensity


async def restart(sup: SupervisorHandle, slot: Slot, cause: BaseException | None) -> None:
    if not allow_restart(sup):
        await give_up(sup, slot, cause)
        return
    sup.stats.restarts += 1
    strategy = sup.spec.strategy
    if strategy is Strategy.ONE_FOR_ONE:
        group = [slot]
    elif strategy is Strategy.ONE_FOR_ALL:
        group = list(sup._slots)
    else:
        group = sup._slots[sup._slots.index(slot) :]
    slot.set_status("restarting")
    others = [s for s in group if s is not slot and s.status == "running"]
    for other in reversed(others):
        log.info(
            "supervisor %r: stopping %r (%s after %r failed)",
            sup.name,
            other.id,
            strategy.value,
            slot.id,
        )
        await sup._terminate(other, "restarting")
    todo = []
    for s in group:
        if s is slot or s in others:
            if s is not slot and s.spec.restart is Restart.TEMPORARY:
                sup._delete(s)  # OTP: a temporary child is never restarted
            else:
                todo.append(s)
    await start_in_order(sup, todo, cause)


async def start_in_order(
    sup: SupervisorHandle, todo: list[Slot], cause: BaseException | None
) -> None:
    for i, s in enumerate(todo):
        if s.status != "restarting":
            continue
        s.restarts += 1
        log.warning(
            "supervisor %r: restarting child %r (restart %d; cause: %s)",
            sup.name,
            s.id,
            s.restarts,
            cause,
        )
        try:
            await sup._launch(s)
        except Exception as exc:
            sup.stats.start_failures += 1
            sup.stats.last_failure = exc
            s.failed_starts += 1
            backoff = s.spec.backoff
            delay = backoff.delay(s.failed_starts, random.random()) if backoff else 0.0
            log.warning(
                "supervisor %r: child %r failed to restart: %s; retrying in %.3f s",
                sup.name,
                s.id,
                exc,
                delay,
            )
            assert sup._tg is not None
            sup._tg.start_soon(retry, sup, todo[i:], exc, delay)
            return


async def retry(
    sup: SupervisorHandle, todo: list[Slot], cause: BaseException, delay: float
) -> None:
    await anyio.sleep(delay)
    async with sup._lock:
        todo = [s for s in todo if s.status == "restarting" and s in sup._slots]
        if sup._down or not todo:
            return
        if not allow_restart(sup):
            await give_up(sup, todo[0], cause)
            return
        sup.stats.restarts += 1
        await start_in_order(sup, todo, cause)


async def give_up(sup: SupervisorHandle, slot: Slot, cause: BaseException | None) -> None:
    sup._down = True
    sup.stats.give_ups += 1
    error = RestartIntensityError(
        f"supervisor {sup.name!r} gave up: more than {sup.spec.intensity} restarts "
        f"within {sup.spec.period} s; the last failure (child {slot.id!r}): {cause}"
    )
    error.__cause__ = cause
    log.error("%s", error)
    sup.failure = error
    with anyio.CancelScope(shield=True):
        await sup._stop_children()
    sup._finish()
