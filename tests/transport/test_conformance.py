"""Every transport passes the same conformance suite (pyisolate.transport.testing)."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

import pytest

from pyisolate import transport as T
from pyisolate.transport import lowlevel as L
from pyisolate.transport import testing
from pyisolate.transport.lowlevel import CudaIpcTransport

if TYPE_CHECKING:
    from collections.abc import Iterator


class _NoControl:
    def send_control(self, peer: int, body: object) -> None:
        pass


@pytest.fixture
def socket_carry() -> Iterator[testing.TransportPair]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def carry(fds: list[int]) -> list[int]:
        L.send_fds(a, fds)
        return L.recv_fds(b, len(fds))[1]

    with a, b:
        yield carry  # type: ignore[misc]


@pytest.mark.parametrize("name", ["inline", "shm", "file", "fake"])
def test_conformance(name: str, socket_carry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake = T.FakeTransport()

    def make_pair() -> testing.TransportPair:
        if name == "fake":
            return fake, fake, socket_carry
        factories = {
            "inline": L.InlineTransport,
            "shm": L.ShmTransport,
            "file": lambda: L.FileTransport(str(tmp_path)),
        }
        return factories[name](), factories[name](), socket_carry

    testing.check_transport(make_pair)
    assert not os.listdir(tmp_path), "the file transport left a file behind"


def test_conformance_cuda_ipc_protocol_on_fake_backend(
    monkeypatch: pytest.MonkeyPatch, socket_carry
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYISOLATE_ENABLE_CUDA_IPC", "1")
    backend = testing.FakeCudaIpcBackend()

    def make_pair() -> testing.TransportPair:
        return (
            CudaIpcTransport(_NoControl(), backend),
            CudaIpcTransport(_NoControl(), backend),
            socket_carry,
        )

    testing.check_transport(make_pair, device="cuda:0", copy_on_write=False)


@pytest.mark.cuda
def test_conformance_cuda_ipc_real(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch.cuda is not available on this machine")
    monkeypatch.setenv("PYISOLATE_ENABLE_CUDA_IPC", "1")
    producer, consumer = CudaIpcTransport(_NoControl()), CudaIpcTransport(_NoControl())
    t = torch.arange(1000, device="cuda", dtype=torch.float32)
    storage = t.untyped_storage()
    exported = producer.export(
        T.Region(storage.nbytes(), lambda b: None, device=str(t.device), storage=storage, owner=t),
        peer=1,
    )
    imported = consumer.import_(exported.handle, [], peer=0)
    assert imported.storage.nbytes() == storage.nbytes()
