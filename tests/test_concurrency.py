"""How methods run inside an actor: sync ones off the loop, async ones concurrently;
and many actors at once."""

from __future__ import annotations

import time

import anyio
import pytest
from actors import Counter, Sleepy

import pyisolate
from pyisolate import SpawnOptions

pytestmark = pytest.mark.anyio


async def test_sync_method_runs_off_the_event_loop(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Sleepy)
    done: list[str] = []

    async def block() -> None:
        done.append(await ref.block(1.5))

    async with anyio.create_task_group() as tg:
        tg.start_soon(block)
        await anyio.sleep(0.2)
        start = time.monotonic()
        assert await ref.ping() == "pong"  # answered while block() sleeps
        assert time.monotonic() - start < 1.0
        assert done == []
    assert done == ["blocked"]
    await ref.stop()


async def _overlap(ref: pyisolate.ActorRef, method: str, n: int, seconds: float) -> float:
    start = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(ref.call, method, seconds)
    return time.monotonic() - start


async def test_sync_methods_run_one_at_a_time_by_default(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Sleepy)
    elapsed = await _overlap(ref, "block", 2, 0.4)
    assert (await ref.stats())["max_active"] == 1
    assert elapsed >= 0.75
    await ref.stop()


async def test_sync_threads_option(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Sleepy, options=SpawnOptions(sync_threads=2))
    await _overlap(ref, "block", 2, 0.6)
    assert (await ref.stats())["max_active"] == 2
    await ref.stop()


async def test_sync_threads_option_on_runtime() -> None:
    async with pyisolate.Runtime(options=SpawnOptions(sync_threads=3)) as rt:
        ref = await rt.spawn(Sleepy)
        await _overlap(ref, "block", 3, 0.6)
        assert (await ref.stats())["max_active"] == 3


async def test_async_methods_run_concurrently(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Sleepy)
    elapsed = await _overlap(ref, "wait", 5, 0.5)
    assert (await ref.stats())["max_active"] == 5
    assert elapsed < 2.0
    await ref.stop()


async def test_trio_actor_backend(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Sleepy, options=SpawnOptions(backend="trio"))
    await _overlap(ref, "wait", 3, 0.3)
    assert (await ref.stats())["max_active"] == 3
    with anyio.move_on_after(0.3):
        await ref.hang()
    await _eventually_cancelled(ref)
    await ref.stop()


async def _eventually_cancelled(ref: pyisolate.ActorRef) -> None:
    from conftest import eventually

    async def cancelled() -> bool:
        return (await ref.stats())["cancelled"] == 1

    await eventually(cancelled)


def test_spawn_options_validation() -> None:
    with pytest.raises(ValueError):
        SpawnOptions(sync_threads=0)
    with pytest.raises(ValueError):
        SpawnOptions(backend="curio")
    with pytest.raises(ValueError):
        SpawnOptions(start_timeout=0)


async def test_fifty_actors(rt: pyisolate.Runtime) -> None:
    refs: list[pyisolate.ActorRef] = []

    async def start(i: int) -> None:
        refs.append(await rt.spawn(Counter, i, name=f"c{i}"))

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(start, i)
    assert len(refs) == 50
    assert len({rt.process_id(r) for r in refs}) == 50

    results: dict[str, int] = {}

    async def call(ref: pyisolate.ActorRef) -> None:
        results[ref.name] = await ref.inc(1000)

    async with anyio.create_task_group() as tg:
        for ref in refs:
            tg.start_soon(call, ref)
    assert results == {f"c{i}": i + 1000 for i in range(50)}

    async with anyio.create_task_group() as tg:
        for ref in refs:
            tg.start_soon(ref.stop)
    assert rt.actors() == []
