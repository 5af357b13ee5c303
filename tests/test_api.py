"""The README's API tour: spawn, call, cast, stream, stop; the blocking facade."""

from __future__ import annotations

import stat
import time

import anyio
import pytest
from actors import Counter
from conftest import eventually

import pyisolate
from pyisolate import ActorClosedError, ActorRef, RemoteStream

pytestmark = pytest.mark.anyio


async def test_tour(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Counter, 5)
    assert isinstance(ref, ActorRef)
    assert await ref.inc(2) == 7
    assert await ref.call("inc", 3) == 10
    assert await ref.inc.call(by=1) == 11
    assert await ref.value() == 11  # a plain def method

    await ref.cast("bump", 100)
    await ref.bump.cast(1000)
    # A cast gets no reply; its effect shows in a later call.
    assert await eventually(lambda: _equals(ref.value(), 1111))

    items = [x async for x in ref.stream("count", 4)]
    assert items == [0, 1, 2, 3]
    stream = ref.count(3)  # attribute call of a generator method
    assert isinstance(stream, RemoteStream)
    assert [x async for x in stream] == [0, 1, 2]
    assert [x async for x in ref.count_sync(3)] == [0, 10, 20]

    await ref.stop()
    with pytest.raises(ActorClosedError):
        await ref.inc(1)
    with pytest.raises(ActorClosedError):
        await ref.cast("bump", 1)
    with pytest.raises(ActorClosedError):
        ref.stream("count", 1)
    assert rt.actors() == []


async def _equals(awaitable, expected) -> bool:  # type: ignore[no-untyped-def]
    return (await awaitable) == expected


async def test_spawn_by_name_and_string_target(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn("actors:Counter", start=1, name="named")
    assert ref.name == "named"
    assert await ref.inc() == 2
    assert "inc" in ref.methods
    assert ref.methods["count"] in ("asyncgen", "gen")
    assert "_private" not in ref.methods
    assert "on_start" not in ref.methods
    with pytest.raises(AttributeError):
        ref.nosuchmethod  # noqa: B018
    with pytest.raises(AttributeError):
        ref._private  # noqa: B018
    with pytest.raises(ValueError, match="already running"):
        await rt.spawn(Counter, name="named")
    assert rt.actors() == [ref]
    await ref.stop()


async def test_values_round_trip(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Counter)
    value = {
        "none": None,
        "bool": True,
        "int": -(2**40),
        "float": 1.5,
        "str": "héllo",
        "bytes": b"\x00\xff",
        "list": [1, [2, 3]],
        "tuple": (1, (2, "x")),
        "set": {1, 2},
        "frozenset": frozenset({"a"}),
        7: "int key",
    }
    assert await ref.echo(value) == value
    back = await ref.echo((1, [2], {3}))
    assert type(back) is tuple
    assert type(back[1]) is list
    assert type(back[2]) is set
    assert await ref.echo(b"x" * 200_000) == b"x" * 200_000
    await ref.stop()


async def test_unknown_method_is_remote_attribute_error(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Counter)
    with pytest.raises(AttributeError):
        await ref.call("nosuch")
    with pytest.raises(AttributeError):
        await ref.call("_private")
    with pytest.raises(TypeError, match="stream"):
        await ref.call("count", 2)  # a generator must be streamed
    with pytest.raises(TypeError, match="call"):
        _ = [x async for x in ref.stream("inc")]
    assert await ref.inc() == 1  # still serving
    await ref.stop()


async def test_runtime_directory_private_and_removed() -> None:
    async with pyisolate.Runtime() as rt:
        path = rt.directory
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        ref = await rt.spawn(Counter)
        await ref.inc()
    assert not path.exists()


async def test_runtime_closes_running_actors() -> None:
    async with pyisolate.Runtime() as rt:
        refs = [await rt.spawn(Counter) for _ in range(2)]
        pids = [rt.process_id(r) for r in refs]
        assert all(pids)
    # Leaving the block stopped them (the leak checker verifies the processes).
    for ref in refs:
        with pytest.raises(ActorClosedError):
            await ref.inc()


async def test_spawn_outside_runtime_is_an_error() -> None:
    rt = pyisolate.Runtime()
    with pytest.raises(RuntimeError):
        await rt.spawn(Counter)


async def test_concurrent_calls_on_one_actor(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Counter)
    results: list[int] = []

    async def worker() -> None:
        for _ in range(20):
            results.append(await ref.inc())

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(worker)
    assert sorted(results) == list(range(1, 101))
    await ref.stop()


def test_blocking_facade() -> None:
    with pyisolate.Runtime.blocking() as rt:
        ref = rt.spawn(Counter, 1)
        assert ref.inc(2) == 3
        assert ref.call("inc", 1) == 4
        assert ref.value() == 4
        ref.cast("bump", 10)
        assert list(ref.count(3)) == [0, 1, 2]
        assert list(ref.stream("count_sync", 2)) == [0, 10]
        with pytest.raises(KeyError):
            ref.fail("key")
        assert [r.name for r in rt.actors()] == [ref.name]
        ref.stop()
        with pytest.raises(ActorClosedError):
            ref.inc()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_blocking_facade_stream_close(backend: str) -> None:
    with pyisolate.Runtime.blocking(backend=backend) as rt:
        ref = rt.spawn("actors:Streamer")
        for item in ref.forever():
            if item == 2:
                break
        # The facade's iterator closes the remote generator when it is dropped.
        end = time.monotonic() + 2
        while ref.stats()["closed"] != 1:
            assert time.monotonic() < end, ref.stats()
            time.sleep(0.02)


def test_blocking_facade_timeout_cancels_remote() -> None:
    with pyisolate.Runtime.blocking() as rt:
        ref = rt.spawn("actors:Sleepy")
        with pytest.raises(TimeoutError):
            ref.call("hang", timeout=0.2)
        assert ref.ping() == "pong"
        end = time.monotonic() + 2
        while ref.stats()["cancelled"] != 1:
            assert time.monotonic() < end, ref.stats()
            time.sleep(0.02)
