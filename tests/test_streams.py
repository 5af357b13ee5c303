"""Streams: iteration, early close, backpressure, errors, timeouts."""

from __future__ import annotations

import gc

import anyio
import pytest
from actors import Streamer
from conftest import eventually

import pyisolate

pytestmark = pytest.mark.anyio


async def _stat(ref: pyisolate.ActorRef, key: str) -> int:
    return int((await ref.stats())[key])


async def _stat_is(ref: pyisolate.ActorRef, key: str, value: int) -> bool:
    return await _stat(ref, key) == value


async def test_stream_to_the_end(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Streamer)
    assert [x async for x in ref.numbers(100)] == list(range(100))
    assert await _stat(ref, "finished") == 1
    # A window smaller than the stream still delivers everything, in order.
    assert [x async for x in ref.stream("numbers", 50, window=1)] == list(range(50))
    assert [x async for x in ref.numbers(0)] == []
    await ref.stop()


@pytest.mark.parametrize("method", ["forever", "forever_sync"])
async def test_break_closes_remote_generator(rt: pyisolate.Runtime, method: str) -> None:
    ref = await rt.spawn(Streamer)
    async for item in ref.stream(method):
        if item == 3:
            break
    # The remote generator's ``finally`` ran.
    await eventually(lambda: _stat_is(ref, "closed", 1), timeout=2)
    assert await _stat(ref, "closed") == 1  # and the actor serves on
    await ref.stop()


async def test_async_with_closes_stream(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Streamer)
    async with ref.forever() as stream:
        assert await stream.__anext__() == 0
        assert await stream.__anext__() == 1
    await eventually(lambda: _stat_is(ref, "closed", 1))
    # A closed stream ends.
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    stream2 = ref.forever()
    await stream2.__anext__()
    await stream2.aclose()
    await eventually(lambda: _stat_is(ref, "closed", 2))
    await ref.stop()


async def test_dropped_stream_closes_remote_generator(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Streamer)
    stream = ref.forever()
    await stream.__anext__()
    del stream
    gc.collect()
    await eventually(lambda: _stat_is(ref, "closed", 1), timeout=2)
    await ref.stop()


@pytest.mark.parametrize("method", ["forever", "forever_sync"])
async def test_backpressure(rt: pyisolate.Runtime, method: str) -> None:
    window = 4
    ref = await rt.spawn(Streamer)
    async with ref.stream(method, window=window) as stream:
        assert await stream.__anext__() == 0
        await anyio.sleep(0.5)  # a slow consumer: the producer must wait
        produced = await _stat(ref, "produced")
        assert window <= produced <= window + 1, produced
        # Consuming more lets it go on; it never gets further than a window ahead.
        for expected in range(1, 40):
            assert await stream.__anext__() == expected
        await anyio.sleep(0.3)
        produced = await _stat(ref, "produced")
        assert 40 <= produced <= 40 + window, produced
    await eventually(lambda: _stat_is(ref, "closed", 1))
    await ref.stop()


async def test_stream_error_after_items(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Streamer)
    seen = []
    with pytest.raises(ValueError, match="failed after 3"):
        async for item in ref.fail_after(3):
            seen.append(item)
    assert seen == [0, 1, 2]
    await ref.stop()


async def test_stream_item_timeout(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Streamer)
    seen = []
    with pytest.raises(TimeoutError):
        async for item in ref.stream("slow", 60.0, timeout=0.3):
            seen.append(item)
    assert seen == [0]
    # The remote generator was closed, and the actor serves on.
    await eventually(lambda: _stat_is(ref, "closed", 1))
    assert [x async for x in ref.stream("numbers", 3, timeout=5)] == [0, 1, 2]
    await ref.stop()


async def test_many_concurrent_streams(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Streamer)
    results: dict[int, list[int]] = {}

    async def consume(i: int) -> None:
        results[i] = [x async for x in ref.stream("numbers", 30 + i, window=3)]

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(consume, i)
    assert results == {i: list(range(30 + i)) for i in range(8)}
    await ref.stop()


async def test_stream_dies_with_actor(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Streamer)
    with pytest.raises(pyisolate.ActorDiedError):
        async for item in ref.stream("forever", window=2):
            if item == 1:
                ref.kill()
