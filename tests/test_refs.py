"""Actor references travel inside messages; actors call each other."""

from __future__ import annotations

import pytest
from actors import Counter, Relay, Sleepy, Streamer

import pyisolate
from pyisolate import ActorDiedError

pytestmark = pytest.mark.anyio


async def test_actor_calls_actor_through_a_sent_ref(rt: pyisolate.Runtime) -> None:
    counter = await rt.spawn(Counter, 10, name="counter")
    relay = await rt.spawn(Relay)
    assert "counter" in await relay.remember("c", counter)
    assert await relay.call_peer("c", "inc", 5) == 15
    assert await relay.call_ref(counter, "inc", 1) == 16
    assert await counter.value() == 16  # the same actor, seen from the host
    # References nested in containers travel too; one sent back is the host's own.
    assert await relay.give_back(counter) == counter
    assert await relay.give_back([counter, {"k": (counter,)}]) == [counter, {"k": (counter,)}]
    streamer = await rt.spawn(Streamer)
    assert await relay.stream_peer(streamer, "numbers", 5) == [0, 1, 2, 3, 4]
    for ref in (counter, relay, streamer):
        await ref.stop()


async def test_errors_between_actors(rt: pyisolate.Runtime) -> None:
    counter = await rt.spawn(Counter)
    relay = await rt.spawn(Relay)
    outcome = await relay.try_call(counter, "fail", "key")
    assert outcome[0] == "KeyError"
    with pytest.raises(KeyError):
        await relay.call_ref(counter, "fail", "key")
    await counter.stop()
    await relay.stop()


async def test_call_to_dead_actor_from_another_actor(rt: pyisolate.Runtime) -> None:
    victim = await rt.spawn(Sleepy)
    relay = await rt.spawn(Relay)
    await relay.remember("v", victim)
    # Dies during the call: the calling actor gets ActorDiedError.
    kind, message, _code = await relay.try_call(victim, "crash", 7)
    assert kind == "ActorDiedError", message
    assert "7" in message
    # Already dead: the call fails at once, again with ActorDiedError.
    kind, message, _ = await relay.try_call(victim, "ping")
    assert kind == "ActorDiedError", message
    # Uncaught, it reaches the host as ActorDiedError too.
    with pytest.raises(ActorDiedError):
        await relay.call_peer("v", "ping")
    assert await relay.try_call(await rt.spawn(Counter), "inc", 2) == ["ok", 2, None]


async def test_caller_death_cancels_its_calls(rt: pyisolate.Runtime) -> None:
    from conftest import eventually

    sleepy = await rt.spawn(Sleepy)
    relay = await rt.spawn(Relay)
    import anyio

    async with anyio.create_task_group() as tg:

        async def call_and_die() -> None:
            with pytest.raises(ActorDiedError):
                await relay.call_ref(sleepy, "hang")

        tg.start_soon(call_and_die)

        async def hang_started() -> bool:
            return (await sleepy.stats())["started"] == 1

        await eventually(hang_started)
        relay.kill()

    # The host cancelled the dead caller's call in the callee.
    async def hang_cancelled() -> bool:
        return (await sleepy.stats())["cancelled"] == 1

    await eventually(hang_cancelled)
    await sleepy.stop()
