"""Hostile actors and peers: each is cut off, and the host serves everyone else."""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import anyio
import msgpack
import pytest
import zmq
from actors import Counter, Hostile
from conftest import eventually

import pyisolate
from pyisolate import ActorStartError, MessageTooLargeError, ProtocolError, SpawnOptions
from pyisolate._wire import Kind, Limits, decode_header, encode_header
from pyisolate.sandbox import SandboxMode

pytestmark = pytest.mark.anyio


def _bad_kind_header() -> bytes:
    header = encode_header(Kind.REPLY, 1, 0)
    # Find a byte that changes the kind to an unknown one, whatever the layout.
    for i in range(len(header)):
        candidate = header[:i] + bytes([99]) + header[i + 1 :]
        try:
            decode_header(candidate)
        except ProtocolError:
            return candidate
    raise AssertionError("no way to corrupt the header's kind")


def _garbage_cases() -> dict[str, list[bytes]]:
    undecodable = encode_header(Kind.REPLY, 0, 0)
    try:
        decode_header(undecodable + b"\xc1")
        one_frame = True  # header and body in one frame
    except ProtocolError:
        one_frame = False
    body = b"\xc1"  # a byte msgpack never uses
    return {
        "garbage": [b"garbage"],
        "bad_header": [_bad_kind_header()],
        "undecodable_body": [undecodable + body] if one_frame else [undecodable, body],
        "too_many_frames": [encode_header(Kind.PONG), b"\x90", b"\x90", b"\x90"],
    }


@pytest.mark.parametrize("case", list(_garbage_cases()))
async def test_garbage_cuts_off_the_actor(rt: pyisolate.Runtime, case: str) -> None:
    good = await rt.spawn(Counter)
    bad = await rt.spawn(Hostile)
    pid = rt.process_id(bad)
    frames = _garbage_cases()[case]
    with pytest.raises(ProtocolError):
        await bad.raw_send(frames)
    await eventually(lambda: rt.process_id(bad) is None)  # killed
    assert pid is not None
    with pytest.raises(ProtocolError):
        await bad.ping()
    assert await good.inc() == 1
    assert await good.inc() == 2
    # The runtime still spawns.
    again = await rt.spawn(Counter)
    assert await again.inc() == 1
    await again.stop()
    await good.stop()


async def test_oversized_body_is_a_protocol_error() -> None:
    try:
        await _oversized()
    finally:
        # When the race hits, the runtime also drops (does not close) the actor's
        # side-channel socket: collect it here so its ResourceWarning lands on
        # this test, not on a random later one.
        gc.collect()


async def _oversized() -> None:
    async with pyisolate.Runtime(limits=Limits(max_frame=1024 * 1024)) as rt:
        good = await rt.spawn(Counter)
        bad = await rt.spawn(Hostile)
        assert len(await bad.big_text(512 * 1024)) == 512 * 1024  # under the limit: fine
        # An honest result over the limit is refused by the actor before it
        # is sent, naming the size and the limit; the actor lives on.
        with anyio.fail_after(8), pytest.raises(MessageTooLargeError, match="1,048,562-byte"):
            await bad.big_text(2 * 1024 * 1024)
        assert await bad.ping() == "pong"
        # The same size sent raw breaks the protocol: ZeroMQ drops the peer.
        with anyio.fail_after(8), pytest.raises(ProtocolError):
            await bad.raw_oversized(2 * 1024 * 1024)
        await eventually(lambda: rt.process_id(bad) is None)
        assert await good.inc() == 1
        assert await good.echo(b"y" * 1000) == b"y" * 1000


def _rogue(endpoint: str, hello: list[bytes]) -> list[list[bytes]]:
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        sock.send_multipart(hello)
        received = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            if sock.poll(50):
                received.append(sock.recv_multipart())
        sock.close(linger=0)
        return received
    finally:
        ctx.term()


def _hello(version: int, actor_id: int, token: bytes) -> list[bytes]:
    header = encode_header(Kind.HELLO)
    body = msgpack.packb([version, actor_id, token])
    try:
        decode_header(header + body)
        return [header + body]
    except ProtocolError:  # pragma: no cover - a two-frame layout
        return [header, body]


def _is_refused(frames: list[bytes]) -> bool:
    return decode_header(frames[0]).kind is Kind.REFUSED


@pytest.mark.parametrize(
    "hello",
    [
        pytest.param(lambda ref: _hello(1, ref.id, b"\x00" * 16), id="wrong-token"),
        pytest.param(lambda ref: _hello(1, 999, b"\x00" * 16), id="unknown-actor"),
        pytest.param(lambda ref: [b"not a hello"], id="garbage"),
        pytest.param(lambda ref: [encode_header(Kind.CALL, 1, ref.id)], id="call"),
    ],
)
async def test_rogue_connection_is_refused(rt: pyisolate.Runtime, hello) -> None:  # type: ignore[no-untyped-def]
    good = await rt.spawn(Counter)
    assert await good.inc() == 1
    received = await anyio.to_thread.run_sync(_rogue, rt.endpoint, hello(good))
    assert len(received) == 1, received
    assert _is_refused(received[0])
    assert await good.inc() == 2
    assert rt.actors() == [good]
    await good.stop()


async def test_wrong_protocol_version(rt: pyisolate.Runtime) -> None:
    # Outside pytest's private (0700) tmp_path: an actor may run under another uid.
    base = Path(tempfile.mkdtemp(prefix="v99"))
    try:
        await _wrong_protocol_version(rt, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def _wrong_protocol_version(rt: pyisolate.Runtime, base: Path) -> None:
    os.chmod(base, 0o755)
    wrapper = base / "python-v99"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "import pyisolate._wire as wire\n"
        "import pyisolate._wire._envelope as envelope\n"
        "wire.PROTOCOL_VERSION = envelope.PROTOCOL_VERSION = 99\n"
        "import pyisolate.actors._child as child\n"
        "child.PROTOCOL_VERSION = 99\n"
        "child.main()\n"
    )
    os.chmod(wrapper, 0o755)
    good = await rt.spawn(Counter)
    start = time.monotonic()
    with pytest.raises(ActorStartError) as info:
        # Unsandboxed: a sandbox's private /tmp would hide the wrapper.
        await rt.spawn(
            Counter, options=SpawnOptions(python=str(wrapper)), sandbox=SandboxMode.DISABLED
        )
    assert time.monotonic() - start < 5
    assert isinstance(info.value.__cause__, ProtocolError)
    assert "99" in str(info.value)
    assert await good.inc() == 1
    await good.stop()
