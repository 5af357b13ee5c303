"""Shutdown specs, the child-management API, counts, and calls across restarts."""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING

import anyio
import pytest
from sup_helpers import eventually, lines, signal_actor, worker

import pyisolate
from pyisolate.supervision import Backoff, ChildSpec, Restart, Supervisor

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


async def test_shutdown_timeout_kills_at_the_deadline(rt: pyisolate.Runtime, journal: Path) -> None:
    sup = await rt.supervise(
        Supervisor(children=[worker("s", journal, shutdown=0.5, ctor={"stubborn": True})])
    )
    started = time.monotonic()
    await sup.terminate_child("s")
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 5.0
    assert lines(journal) == ["start s", "stop s"]  # on_stop ran, then the kill came
    assert sup.count_children().active == 0


async def test_brutal_kill(rt: pyisolate.Runtime, journal: Path) -> None:
    sup = await rt.supervise(
        Supervisor(children=[worker("s", journal, shutdown="brutal_kill", ctor={"stubborn": True})])
    )
    started = time.monotonic()
    await sup.stop()
    assert time.monotonic() - started < 2.0
    assert lines(journal) == ["start s"]  # no on_stop: killed outright
    assert sup.stats.failures == 0  # the supervisor's own doing


async def test_child_management(rt: pyisolate.Runtime, journal: Path) -> None:
    sup = await rt.supervise(Supervisor(children=[worker("a", journal)]))
    assert sup.count_children() == pyisolate_counts(1, 1, 0, 1)
    b = await sup.start_child(worker("b", journal))
    assert await b.inc() == 1
    assert sup.count_children() == pyisolate_counts(2, 2, 0, 1 + 1)
    with pytest.raises(ValueError, match="already exists"):
        await sup.start_child(worker("b"))
    with pytest.raises(pyisolate.SupervisorError):
        await sup.start_child(ChildSpec("bad", "sup_actors:Failing"))
    assert sup.count_children().specs == 2
    await sup.terminate_child("b")
    assert sup.count_children() == pyisolate_counts(2, 1, 0, 2)
    assert [c.status for c in sup.which_children()] == ["running", "terminated"]
    with pytest.raises(pyisolate.ActorClosedError):
        await b.inc(timeout=2)
    with pytest.raises(pyisolate.SupervisorError):
        await sup.restart_child("a")  # running: nothing to restart
    await sup.restart_child("b")
    assert await b.inc() == 1  # same reference, new incarnation
    assert sup.count_children() == pyisolate_counts(2, 2, 0, 2)
    with pytest.raises(pyisolate.SupervisorError):
        await sup.delete_child("b")  # running: terminate first
    await sup.terminate_child("b")
    await sup.delete_child("b")
    assert sup.count_children() == pyisolate_counts(1, 1, 0, 1)
    with pytest.raises(KeyError):
        sup.ref("b")
    nested = await sup.start_child(ChildSpec("sub", Supervisor(children=[worker("x")])))
    assert await nested.ref("x").inc() == 1
    assert sup.count_children() == pyisolate_counts(2, 2, 1, 1)
    await sup.terminate_child("sub")
    assert sup.count_children() == pyisolate_counts(2, 1, 1, 1)
    assert lines(journal) == ["start a", "start b", "stop b", "start b", "stop b"]


def pyisolate_counts(specs: int, active: int, supervisors: int, workers: int) -> object:
    from pyisolate.supervision import ChildCounts

    return ChildCounts(specs, active, supervisors, workers)


async def test_call_waits_for_the_next_incarnation(rt: pyisolate.Runtime, tmp_path: Path) -> None:
    flag = tmp_path / "fail"
    sup = await rt.supervise(
        Supervisor(
            intensity=50,
            children=[
                worker(
                    "a", ctor={"fail_flag": str(flag)}, backoff=Backoff(minimum=0.1, maximum=0.2)
                )
            ],
        )
    )
    ref = sup.ref("a")
    flag.touch()
    signal_actor(rt, ref, signal.SIGKILL)
    await eventually(lambda: sup.stats.start_failures >= 1)
    results = []

    async def caller() -> None:
        results.append(await ref.inc(3, timeout=10))

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        await anyio.sleep(0.5)
        assert results == []  # still waiting: the restarts keep failing
        flag.unlink()
    assert results == [3]
    # A call that cannot wait that long times out with the builtin error.
    flag.touch()
    signal_actor(rt, ref, signal.SIGKILL)
    # Once the death is seen (before, the call would fail with ActorDiedError):
    await eventually(lambda: sup.which_children()[0].status == "restarting")
    with pytest.raises(TimeoutError):
        await ref.inc(timeout=0.3)
    flag.unlink()
    assert await ref.value(timeout=10) == 0


async def test_in_flight_calls_fail_once_idempotent_ones_retry(rt: pyisolate.Runtime) -> None:
    sup = await rt.supervise(Supervisor(children=[worker("a", idempotent={"echo"})]))
    ref = sup.ref("a")
    outcome: dict[str, object] = {}

    async def plain() -> None:
        try:
            await ref.call("slow_echo_plain", 1, timeout=10)
        except Exception as exc:
            outcome["plain"] = exc

    async def retried() -> None:
        outcome["retried"] = await ref.slow_echo("x", 0.3, timeout=10)

    async with anyio.create_task_group() as tg:
        tg.start_soon(plain)
        tg.start_soon(retried)
        await anyio.sleep(0.15)
        signal_actor(rt, ref, signal.SIGKILL)
    assert isinstance(outcome["plain"], pyisolate.ActorDiedError)
    assert outcome["retried"] == "x"
    assert "echo" in sup.which_children()[0].ref._slot.idempotent


async def test_streams_through_supervised_refs(rt: pyisolate.Runtime) -> None:
    sup = await rt.supervise(Supervisor(children=[worker("a", restart=Restart.PERMANENT)]))
    ref = sup.ref("a")
    assert [i async for i in ref.numbers(4)] == [0, 1, 2, 3]
    signal_actor(rt, ref, signal.SIGKILL)
    await eventually(lambda: sup.stats.failures == 1)
    stream = ref.stream("numbers", 3, timeout=10)  # opens on the next incarnation
    assert [i async for i in stream] == [0, 1, 2]


async def test_self_exit_and_logging(
    rt: pyisolate.Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    sup = await rt.supervise(Supervisor(children=[worker("a")]))
    signal_actor(rt, sup.ref("a"), signal.SIGKILL)
    await eventually(lambda: sup.stats.restarts == 1)
    assert any(
        "restarting child 'a'" in r.getMessage() and "SIGKILL" in r.getMessage()
        for r in caplog.records
    )


def test_exit_actor_outside_an_actor() -> None:
    from pyisolate import exit_actor

    with pytest.raises(RuntimeError):
        exit_actor()
