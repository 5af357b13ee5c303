"""Strategies, restart intensity and escalation, nesting, start and stop order."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import anyio
import pytest
from sup_helpers import eventually, lines, signal_actor, worker

import pyisolate
from pyisolate.supervision import ChildSpec, Strategy, Supervisor

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


async def _kill_and_settle(rt: pyisolate.Runtime, sup: object, cid: str) -> None:
    ref = sup.ref(cid)  # type: ignore[attr-defined]
    before = sup.stats.restarts  # type: ignore[attr-defined]
    signal_actor(rt, ref, signal.SIGKILL)
    await eventually(
        lambda: (
            sup.stats.restarts > before  # type: ignore[attr-defined]
            and sup.count_children().active == len(sup.which_children())
        ),  # type: ignore[attr-defined]
        timeout=15,
    )


async def test_start_and_stop_order(rt: pyisolate.Runtime, journal: Path) -> None:
    sup = await rt.supervise(Supervisor(children=[worker(c, journal) for c in "abc"]))
    assert lines(journal) == ["start a", "start b", "start c"]
    assert [c.id for c in sup.which_children()] == ["a", "b", "c"]
    await sup.stop()
    assert lines(journal)[3:] == ["stop c", "stop b", "stop a"]
    assert sup.count_children().active == 0
    await sup.wait()  # a requested stop is not a failure


async def test_start_failure_fails_the_supervisor(rt: pyisolate.Runtime, journal: Path) -> None:
    children = [worker("a", journal), ChildSpec("bad", "sup_actors:Failing"), worker("c", journal)]
    with pytest.raises(pyisolate.SupervisorError, match="'bad' failed to start") as info:
        await rt.supervise(Supervisor(children=children))
    assert isinstance(info.value.__cause__, pyisolate.ActorStartError)
    assert lines(journal) == ["start a", "stop a"]  # c never started; a was stopped


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (Strategy.ONE_FOR_ONE, ["start b"]),
        (Strategy.ONE_FOR_ALL, ["stop c", "stop a", "start a", "start b", "start c"]),
        (Strategy.REST_FOR_ONE, ["stop c", "start b", "start c"]),
    ],
)
async def test_strategy(
    rt: pyisolate.Runtime, journal: Path, strategy: Strategy, expected: list[str]
) -> None:
    sup = await rt.supervise(
        Supervisor(strategy=strategy, children=[worker(c, journal) for c in "abc"])
    )
    pids = {c: rt.process_id(sup.ref(c)) for c in "abc"}
    await _kill_and_settle(rt, sup, "b")
    assert lines(journal)[3:] == expected
    for c in "abc":
        restarted = f"start {c}" in expected
        assert (rt.process_id(sup.ref(c)) != pids[c]) == restarted
        assert await sup.ref(c).inc() == 1
    assert sup.stats.restarts == 1
    assert sup.stats.failures == 1
    await sup.stop()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", list(Strategy))
async def test_intensity_exceeded(rt: pyisolate.Runtime, journal: Path, strategy: Strategy) -> None:
    sup = await rt.supervise(
        Supervisor(
            strategy=strategy,
            intensity=1,
            period=30.0,
            children=[worker(c, journal) for c in "abc"],
        )
    )
    await _kill_and_settle(rt, sup, "b")  # one restart is allowed
    del journal
    signal_actor(rt, sup.ref("b"), signal.SIGKILL)  # the second is one too many
    with anyio.fail_after(10), pytest.raises(pyisolate.RestartIntensityError) as info:
        await sup.wait()
    assert isinstance(info.value.__cause__, pyisolate.ActorDiedError)
    assert sup.stats.give_ups == 1
    assert sup.count_children().active == 0
    with pytest.raises(pyisolate.ActorClosedError):
        await sup.ref("a").inc(timeout=2)
    with pytest.raises(pyisolate.SupervisorError):
        await sup.start_child(worker("d"))


async def test_stops_in_reverse_order_when_giving_up(rt: pyisolate.Runtime, journal: Path) -> None:
    sup = await rt.supervise(Supervisor(intensity=0, children=[worker(c, journal) for c in "abc"]))
    signal_actor(rt, sup.ref("a"), signal.SIGKILL)
    with anyio.fail_after(10), pytest.raises(pyisolate.RestartIntensityError):
        await sup.wait()
    assert lines(journal)[3:] == ["stop c", "stop b"]


@pytest.mark.slow
async def test_nested_escalation(rt: pyisolate.Runtime, journal: Path) -> None:
    inner = Supervisor(intensity=0, children=[worker("x", journal), worker("y", journal)])
    top = Supervisor(
        intensity=1,
        period=30.0,
        children=[worker("a", journal), ChildSpec("inner", inner), worker("b", journal)],
    )
    sup = await rt.supervise(top)
    assert lines(journal) == ["start a", "start x", "start y", "start b"]
    assert [c.kind for c in sup.which_children()] == ["worker", "supervisor", "worker"]
    assert sup.count_children().supervisors == 1
    x = sup.supervisor("inner").ref("x")
    await x.inc(7)
    old_pid = rt.process_id(x)
    # x dies: inner may not restart (intensity 0), so it gives up; top restarts
    # inner (one_for_one), which starts x and y afresh. x's reference follows.
    signal_actor(rt, x, signal.SIGKILL)
    assert await x.value(timeout=10) == 0
    assert rt.process_id(x) != old_pid
    assert lines(journal)[4:] == ["stop y", "start x", "start y"]
    assert sup.stats.escalations == 1
    assert sup.stats.restarts == 1
    # Again: top's intensity (1) is exceeded now, and top fails in turn.
    signal_actor(rt, sup.supervisor("inner").ref("x"), signal.SIGKILL)
    with anyio.fail_after(10), pytest.raises(pyisolate.RestartIntensityError) as info:
        await sup.wait()
    assert isinstance(info.value.__cause__, pyisolate.RestartIntensityError)
    assert lines(journal)[7:] == ["stop y", "stop b", "stop a"]


async def test_refs_held_by_other_actors_follow_restarts(rt: pyisolate.Runtime) -> None:
    from actors import Relay

    sup = await rt.supervise(Supervisor(children=[worker("a")]))
    relay = await rt.spawn(Relay)
    await relay.remember("a", sup.ref("a"))
    assert await relay.call_peer("a", "inc", 2) == 2
    await _kill_and_settle(rt, sup, "a")
    assert await relay.call_peer("a", "inc", 2) == 2  # the new incarnation
    await relay.stop()
    await sup.stop()
