"""Actor-to-actor calls to a supervised child while it restarts: the host
holds them (``pyisolate.supervision._held_calls``) and delivers them, in order, to the next incarnation;
they fail with the final error if the child will not run again."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from sup_helpers import eventually, signal_actor, worker

from pyisolate.supervision import Backoff, Supervisor

if TYPE_CHECKING:
    from pathlib import Path

    import pyisolate

pytestmark = pytest.mark.anyio


async def _failing_child(rt: pyisolate.Runtime, flag: Path) -> tuple[Any, Any, Any]:
    """A supervised worker whose restarts fail while ``flag`` exists, and an
    actor holding a plain reference to it."""
    sup = await rt.supervise(
        Supervisor(
            intensity=100,
            children=[
                worker(
                    "a", ctor={"fail_flag": str(flag)}, backoff=Backoff(minimum=0.1, maximum=0.2)
                )
            ],
        )
    )
    child = sup.ref("a")
    caller = await rt.spawn("sup_actors:Caller", child)
    assert await caller.relay("inc", [1], 5) == [1, None]
    return sup, child, caller


async def _kill_into_failing_restarts(
    rt: pyisolate.Runtime, sup: Any, child: Any, flag: Path
) -> None:
    flag.touch()
    signal_actor(rt, child, signal.SIGKILL)
    await eventually(lambda: sup.stats.start_failures >= 1)


async def test_forwarded_calls_wait_for_the_next_incarnation(
    rt: pyisolate.Runtime, tmp_path: Path
) -> None:
    flag = tmp_path / "fail"
    sup, child, caller = await _failing_child(rt, flag)
    await _kill_into_failing_restarts(rt, sup, child, flag)
    results: dict[str, Any] = {}

    async def relay() -> None:
        results["relay"] = await caller.relay("echo", ["hi"], 10)

    async def ordered() -> None:
        results["ordered"] = await caller.relay_casts_then_value([1, 2, 3], 10)

    async def array() -> None:
        results["array"] = await caller.relay_array(50_000, 10)  # fds held, then forwarded

    async with anyio.create_task_group() as tg:
        tg.start_soon(relay)
        tg.start_soon(ordered)
        tg.start_soon(array)
        await eventually(lambda: sup.waiting_calls("a") >= 5)  # 1 + 3 casts + 1 + 1
        assert results == {}  # waiting, not failed
        flag.unlink()
    assert results == {"relay": ["hi", None], "ordered": 6, "array": True}
    assert sup.waiting_calls("a") == 0


async def test_call_in_flight_at_the_death_fails_once(
    rt: pyisolate.Runtime, tmp_path: Path
) -> None:
    sup = await rt.supervise(Supervisor(children=[worker("a")]))
    child = sup.ref("a")
    caller = await rt.spawn("sup_actors:Caller", child)
    outcome: list[Any] = []

    async def relay() -> None:
        outcome.append(await caller.relay("slow_echo_plain", [1], 10))

    async with anyio.create_task_group() as tg:
        tg.start_soon(relay)
        await anyio.sleep(0.2)
        signal_actor(rt, child, signal.SIGKILL)
    assert outcome == [[None, "ActorDiedError"]]
    assert await caller.relay("echo", [2], 10) == [2, None]  # the next incarnation


async def test_held_call_times_out_and_is_withdrawn(rt: pyisolate.Runtime, tmp_path: Path) -> None:
    flag = tmp_path / "fail"
    sup, child, caller = await _failing_child(rt, flag)
    await _kill_into_failing_restarts(rt, sup, child, flag)
    assert await caller.relay("echo", [1], 0.3) == [None, "TimeoutError"]
    await eventually(lambda: sup.waiting_calls("a") == 0)  # its CANCEL removed it
    flag.unlink()
    assert await caller.relay("value", [], 10) == [0, None]


async def test_held_calls_fail_when_the_child_stays_down(
    rt: pyisolate.Runtime, tmp_path: Path
) -> None:
    flag = tmp_path / "fail"
    sup, child, caller = await _failing_child(rt, flag)
    await _kill_into_failing_restarts(rt, sup, child, flag)
    results: list[Any] = []

    async def relay() -> None:
        results.append(await caller.relay("echo", [1], 30))

    started = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay)
        await eventually(lambda: sup.waiting_calls("a") == 1)
        await sup.terminate_child("a")
    assert results == [[None, "ActorClosedError"]]
    assert anyio.current_time() - started < 10  # failed at once, not at the timeout
    # Terminated: calls fail at once, as for any actor that is not running
    # (with the last incarnation's error: here it died starting).
    result, error = await caller.relay("echo", [1], 30)
    assert result is None
    assert error in ("ActorClosedError", "ActorDiedError")
