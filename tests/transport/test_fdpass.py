"""SCM_RIGHTS helpers: records, truncation, closed peers, stream sockets."""

from __future__ import annotations

import os
import socket

import pytest

from pyisolate.errors import TransportError
from pyisolate.transport.lowlevel import MAX_FDS, recv_fds, send_fds


def _pipe_fds(n: int) -> list[int]:
    fds: list[int] = []
    for _ in range(n):
        fds.extend(os.pipe())
    return fds


@pytest.mark.parametrize("kind", [socket.SOCK_SEQPACKET, socket.SOCK_STREAM])
def test_fds_and_tag_arrive_in_order(kind: int) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    mine = _pipe_fds(2)
    try:
        with a, b:
            send_fds(a, mine, b"first")
            send_fds(a, [], b"second")
            send_fds(a, mine[:1], b"")
            tag, got = recv_fds(b, 8)
            assert tag == b"first"
            assert len(got) == 4
            os.write(mine[1], b"x")
            assert os.read(got[0], 1) == b"x"  # the same pipe, a new fd
            for fd in got:
                os.close(fd)
            assert recv_fds(b, 8) == (b"second", [])
            tag, got = recv_fds(b, 1)
            assert tag == b""
            assert len(got) == 1
            os.close(got[0])
    finally:
        for fd in mine:
            os.close(fd)


def test_truncated_fds_are_closed_and_reported() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    mine = _pipe_fds(3)
    try:
        with a, b:
            send_fds(a, mine)
            with pytest.raises(TransportError, match=r"truncated|expected"):
                recv_fds(b, 2)
    finally:
        for fd in mine:
            os.close(fd)


def test_peer_closed() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with b:
        a.close()
        with pytest.raises(TransportError, match="closed"):
            recv_fds(b, 4)


def test_too_many_fds_refused() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b, pytest.raises(TransportError, match="at once"):
        send_fds(a, [0] * (MAX_FDS + 1))
