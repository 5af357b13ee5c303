"""Fixtures for the transport tests: every test must leave no fd open, and
helpers to round-trip values through a real codec and a real socketpair."""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pyisolate._wire import Codec, DecodeContext, EncodeContext, ExtRegistry
from pyisolate.transport import lowlevel as L


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _describe(fd: str) -> str:
    try:
        return f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}"
    except OSError:
        return fd


@pytest.fixture(scope="session")
def _warm_torch() -> None:
    """torch opens fds of its own on first use (thread pools): not ours to count."""
    try:
        import torch
    except ImportError:
        return
    src = torch.randn(1 << 22)
    torch.empty_like(src).copy_(src)
    torch.frombuffer(bytearray(1 << 22), dtype=torch.uint8).copy_(src.view(torch.uint8)[: 1 << 22])


@pytest.fixture(autouse=True)
def no_fd_leak(_warm_torch: None) -> Iterator[None]:
    gc.collect()
    before = _open_fds()
    yield
    gc.collect()
    leaked = _open_fds() - before
    # listdir's own fd may be counted in one listing and not the other
    leaked = {fd for fd in leaked if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not leaked, f"test leaked fds: {[_describe(fd) for fd in sorted(leaked)]}"


@pytest.fixture
def codec() -> Codec:
    registry = ExtRegistry()
    L.install(registry)
    return Codec(registry)


@pytest.fixture
def fdpair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        yield a, b


Roundtrip = Callable[..., Any]


@pytest.fixture
def roundtrip(
    codec: Codec, fdpair: tuple[socket.socket, socket.socket], tmp_path: Any
) -> Iterator[Roundtrip]:
    """``roundtrip(value, transport=None, session=None)``: encode, pass the fds
    through a real socketpair, decode, close what nobody took."""
    sessions: list[L.TransportSession] = []

    def run(
        value: Any,
        transport: str | None = None,
        session: L.TransportSession | None = None,
        **session_kwargs: Any,
    ) -> Any:
        if session is None:
            session = L.TransportSession(
                send_control=lambda peer, body: None,
                transport=transport,
                workdir=str(tmp_path),
                **session_kwargs,
            )
            sessions.append(session)
        ctx = EncodeContext(peer=1, session=session)
        body = codec.encode(value, ctx)
        L.send_fds(fdpair[0], ctx.fds)
        nfds = len(ctx.fds)
        ctx.keepalive.clear()  # the core's contract: message sent, exporter fds may close
        _tag, fds = L.recv_fds(fdpair[1], nfds)
        dctx = DecodeContext(peer=0, fds=fds, session=session)
        try:
            return codec.decode(body, dctx)
        finally:
            L.close_unused_fds(dctx.fds)

    yield run
    for session in sessions:
        session.close()  # the core's contract too: frees pooled shm segments
