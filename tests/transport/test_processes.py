"""Real processes: SCM_RIGHTS transfer, copy-on-write isolation, zero-copy
forwarding, and no leak when a peer is SIGKILLed mid-transfer or dies."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from pyisolate import transport as T
from pyisolate._wire import Codec, DecodeContext, EncodeContext
from pyisolate.transport import lowlevel as L

if TYPE_CHECKING:
    from collections.abc import Iterator

torch = pytest.importorskip("torch")

CHILD = r"""
import os, socket, sys, time
import torch
from pyisolate import transport as T
from pyisolate.transport import lowlevel as L
from pyisolate._wire import Codec, DecodeContext, EncodeContext, ExtRegistry

registry = ExtRegistry(); L.install(registry); codec = Codec(registry)
sock = socket.socket(fileno=int(sys.argv[1]))
mode, transport, workdir = sys.argv[2], sys.argv[3], sys.argv[4]
session = L.TransportSession(send_control=lambda p, b: None, transport=transport, workdir=workdir)

def send(value):
    ctx = EncodeContext(peer=0, session=session)
    body = codec.encode(value, ctx)
    L.send_fds(sock, ctx.fds, body)
    ctx.keepalive.clear()

def recv():
    tag, fds = L.recv_fds(sock, 253)
    ctx = DecodeContext(fds=fds, session=session)
    try:
        return codec.decode(tag, ctx)
    finally:
        L.close_unused_fds(ctx.fds)

if mode == "echo":
    t = recv()
    send([float(t.sum()), T.is_shared(t), t])  # forwarded as received: no copy
    t.fill_(-1.0)  # a write on the receiving side: copy-on-write
    send([float(t.sum())])
    recv()
elif mode == "hang":
    time.sleep(60)
elif mode == "send-and-die":
    send(torch.full((1 << 20,), 4.0))
    os.kill(os.getpid(), 9)
"""


def _shm_names() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


class Peer:
    def __init__(self, mode: str, transport: str, workdir: str, codec: Codec) -> None:
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with child:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(child.fileno()), mode, transport, workdir],
                pass_fds=[child.fileno()],
            )
        self.codec = codec
        self.session = L.TransportSession(
            send_control=lambda p, b: None, transport=transport, workdir=workdir
        )

    def send(self, value: Any) -> None:
        ctx = EncodeContext(peer=1, session=self.session)
        body = self.codec.encode(value, ctx)
        L.send_fds(self.sock, ctx.fds, body)
        ctx.keepalive.clear()

    def recv(self) -> Any:
        tag, fds = L.recv_fds(self.sock, 253)
        ctx = DecodeContext(peer=1, fds=fds, session=self.session)
        try:
            return self.codec.decode(tag, ctx)
        finally:
            L.close_unused_fds(ctx.fds)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.session.peer_died(1)  # what the core does when a peer exits
        self.session.close()
        self.sock.close()


@pytest.fixture
def spawn(codec: Codec, tmp_path) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    peers: list[Peer] = []

    def start(mode: str, transport: str = "shm") -> Peer:
        peer = Peer(mode, transport, str(tmp_path), codec)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.close()
    assert not list(tmp_path.iterdir()), "a transfer file was left behind"


@pytest.mark.parametrize("transport", ["shm", "file"])
def test_transfer_isolation_and_forwarding(spawn, transport: str) -> None:  # type: ignore[no-untyped-def]
    peer = spawn("echo", transport)
    t = torch.arange(1 << 20, dtype=torch.float32)
    expected = float(t.sum())
    peer.send(t)
    total, was_shared, echoed = peer.recv()
    assert total == expected
    assert was_shared
    assert torch.equal(echoed, t)
    (after_write,) = peer.recv()
    assert after_write == -float(1 << 20)  # the child saw its own write...
    assert float(t.sum()) == expected
    assert torch.equal(echoed, t)
    peer.send(None)
    assert peer.proc.wait(30) == 0


@pytest.mark.parametrize("transport", ["shm", "file"])
def test_sigkill_mid_transfer_leaks_nothing(spawn, transport: str) -> None:  # type: ignore[no-untyped-def]
    shm_before = _shm_names()
    gc.collect()
    fds_before = T._segments.open_fd_count()
    peer = spawn("hang", transport)
    for _ in range(3):  # fds in flight: the child never reads them
        peer.send(torch.randn(1 << 18))
    peer.proc.send_signal(signal.SIGKILL)
    peer.close()
    gc.collect()
    assert T._segments.open_fd_count() == fds_before
    assert _shm_names() == shm_before


def test_sender_death_keeps_received_tensors_valid(spawn) -> None:  # type: ignore[no-untyped-def]
    shm_before = _shm_names()
    peer = spawn("send-and-die")
    assert peer.proc.wait(30) == -signal.SIGKILL
    got = peer.recv()  # the fds were in the socket when the sender died
    assert bool((got == 4.0).all())
    assert got.numel() == 1 << 20
    del got
    assert _shm_names() == shm_before
