"""Spawning from the warm template: correctness, exits, reaping, fallback."""

from __future__ import annotations

import logging
import os
import signal

import pytest
from sup_helpers import eventually

import pyisolate

pytestmark = pytest.mark.anyio

FORKED = pyisolate.SpawnOptions(template=True)  # the template shared by these settings


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


async def test_forked_actor_works_and_reports_its_exit(rt: pyisolate.Runtime) -> None:
    first = await rt.spawn("sup_actors:Worker", options=FORKED)
    second = await rt.spawn("sup_actors:Worker", options=FORKED)
    assert await first.inc(2) == 2
    assert await second.inc(3) == 3
    pid = rt.process_id(second)
    assert pid is not None
    assert _ppid(pid) != os.getpid()
    assert _ppid(pid) == _ppid(rt.process_id(first))  # type: ignore[arg-type]
    with pytest.raises(pyisolate.ActorDiedError) as info:
        await second.die(3)
    assert info.value.exitcode == 3
    os.kill(rt.process_id(first), signal.SIGKILL)  # type: ignore[arg-type]
    with pytest.raises(pyisolate.ActorDiedError):
        await eventually(lambda: first.inc(), timeout=5)
    third = await rt.spawn("sup_actors:Worker", options=FORKED)
    assert await third.inc() == 1
    await third.stop()


async def test_forked_actor_self_exit_is_normal(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn("sup_actors:Worker", options=FORKED)
    pid = rt.process_id(ref)
    await ref.quit()
    await eventually(lambda: rt.process_id(ref) is None)
    assert pid is not None


async def test_sandboxed_template() -> None:
    async with pyisolate.Runtime() as rt:  # the default (sandboxed) policy
        ref = await rt.spawn("sup_actors:Worker", options=FORKED)
        assert await ref.inc() == 1
        assert rt.isolation(ref) == rt.isolation(await rt.spawn("sup_actors:Worker"))


async def test_cold_fallback_is_logged(
    rt: pyisolate.Runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delattr(os, "fork")
    with caplog.at_level(logging.DEBUG, logger="pyisolate.template"):
        ref = await rt.spawn("sup_actors:Worker", options=FORKED)
    assert await ref.inc() == 1
    assert any("starts cold" in r.getMessage() for r in caplog.records)
    assert _ppid(rt.process_id(ref)) == os.getpid()  # type: ignore[arg-type]


async def test_torch_actor_from_template_has_no_cuda_context(rt: pyisolate.Runtime) -> None:
    pytest.importorskip("torch")
    ref = await rt.spawn("torch_actor:TorchWorker", options=FORKED)
    assert await ref.double([1.0, 2.0]) == [2.0, 4.0]
    assert await ref.cuda_initialized() is False
