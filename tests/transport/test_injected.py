"""``Runtime(transports=[...])``: the host sends by what it was given, through
real actor processes; an actor receives by a custom transport once its module
registered it, and says how to fix it when it did not."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import anyio
import pytest

import pyisolate
from pyisolate import transport as T

from .fake_actors import FakeReceiver
from .transport_actors import Tensors

pytestmark = pytest.mark.anyio

KiB = 1024


async def test_a_fake_transport_given_to_the_runtime_carries_the_hosts_sends() -> None:
    fake = T.FakeTransport()
    async with pyisolate.Runtime(transports=[fake]) as rt:
        a = await rt.spawn(FakeReceiver)
        payload = os.urandom(200 * KiB)
        with anyio.fail_after(30):
            digest, size, _kind = await a.digest(T.OutOfBand(payload))
            assert (digest, size) == (hashlib.sha256(payload).hexdigest(), len(payload))
            # large bytes (over the inline threshold) go by it too, and arrive as bytes
            blob = os.urandom(100 * KiB)
            assert await a.echo(blob) == blob
            actor_log = await a.fake_log()
            # a reply goes by the actor's own order; the host receives it by name
            made = await a.made(300 * KiB)
        assert made == bytes(range(256)) * (300 * KiB // 256)
        exports = [n for op, peer, n in fake.log if op == "export" and peer == a.id]
        assert exports == [len(payload), len(blob)], fake.log
        assert [n for op, _peer, n in actor_log if op == "import"] == [len(payload), len(blob)]
        assert not [entry for entry in fake.log if entry[0] == "import"]  # not by fake
        assert [s.name for s in rt.transport.get().order] == ["fake"]


async def test_an_actor_that_did_not_register_the_transport_names_the_fix() -> None:
    async with pyisolate.Runtime(transports=[T.FakeTransport()]) as rt:
        a = await rt.spawn(Tensors)  # its module does not import FakeTransport
        with anyio.fail_after(30):
            assert await a.digest(b"small") == (  # positive control: nothing out of band
                hashlib.sha256(b"small").hexdigest(),
                5,
                "bytes",
            )
            with pytest.raises(Exception, match=r"unknown transport 'fake'.*register it"):
                await a.digest(T.OutOfBand(os.urandom(200 * KiB)))


def test_the_runtime_checks_its_transports_when_made() -> None:
    with pytest.raises(TypeError, match="Transport instances, TransportSpec"):
        pyisolate.Runtime(transports=[object()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="unknown transport 'nope'"):
        pyisolate.Runtime(transports=["nope"])
    assert pyisolate.Runtime(transports=["shm", T.FakeTransport()])  # positive control


async def test_the_default_runtime_sends_by_the_registry_order(rt: Any) -> None:
    await rt.spawn(Tensors)
    assert [s.name for s in rt.transport.get().order] == ["cuda_ipc", "shm", "file", "inline"]
