"""The CUDA IPC protocol (keep-alive, release, consumer death, handle cache),
on the CPU with a fake backend; the real thing is marked ``cuda``."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from pyisolate.errors import TransportError
from pyisolate.transport import lowlevel as L
from pyisolate.transport.testing import FakeCudaIpcBackend, region_of


class Wire:
    """Routes control messages between two sessions, as the core would."""

    def __init__(self) -> None:
        self.sessions: dict[int, L.TransportSession] = {}
        self.sent: list[tuple[int, int, Any]] = []

    def sender(self, me: int):  # type: ignore[no-untyped-def]
        def send(peer: int, body: Any) -> None:
            self.sent.append((me, peer, body))
            self.sessions[peer].handle_control(me, body)

        return send


@pytest.fixture
def pair(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYISOLATE_ENABLE_CUDA_IPC", "1")
    backend = FakeCudaIpcBackend()
    wire = Wire()
    host = L.TransportSession(send_control=wire.sender(0), cuda_backend=backend)
    actor = L.TransportSession(send_control=wire.sender(1), cuda_backend=backend)
    wire.sessions = {0: host, 1: actor}
    return host, actor, backend, wire


def _cuda(session: L.TransportSession) -> L.CudaIpcTransport:
    t = session.transports["cuda_ipc"]
    assert isinstance(t, L.CudaIpcTransport)
    return t


def test_producer_keeps_storage_until_every_consumer_released(pair) -> None:  # type: ignore[no-untyped-def]
    host, actor, backend, wire = pair
    region = region_of(b"x" * 100, device="cuda:0")
    first = host.export(_cuda(host), region, peer=1)
    second = host.export(_cuda(host), region, peer=1)
    assert _cuda(host).held_count(1) == 2
    a = actor.import_("cuda_ipc", first.handle, [], peer=0)
    b = actor.import_("cuda_ipc", second.handle, [], peer=0)
    assert backend.opens == 1  # the handle cache: one open per block and producer
    assert a.storage is b.storage
    del a
    gc.collect()
    actor.flush()
    assert _cuda(host).held_count(1) == 2  # b still uses the storage
    del b
    gc.collect()
    actor.flush()
    assert _cuda(host).held_count(1) == 0
    _me, to, body = wire.sent[-1]
    assert to == 0
    assert body["op"] == "release"
    assert sorted(body["tokens"]) == [1, 2]


def test_consumer_death_releases_everything(pair) -> None:  # type: ignore[no-untyped-def]
    host, _actor, _backend, _wire = pair
    for _ in range(3):
        host.export(_cuda(host), region_of(b"y" * 10, device="cuda:0"), peer=1)
    assert _cuda(host).held_count(1) == 3
    host.peer_died(1)
    assert _cuda(host).held_count() == 0


def test_producer_death_drops_the_consumer_cache(pair) -> None:  # type: ignore[no-untyped-def]
    host, actor, _backend, _wire = pair
    exported = host.export(_cuda(host), region_of(b"z" * 10, device="cuda:0"), peer=1)
    kept = actor.import_("cuda_ipc", exported.handle, [], peer=0)
    actor.peer_died(0)
    assert not _cuda(actor).opened
    del kept
    gc.collect()
    actor.flush()  # nothing is sent to a dead peer


@pytest.mark.parametrize(
    ("change", "message"),
    [({"cuda": "11.0"}, "same CUDA version"), ({"gpu": "GPU-other"}, "not visible")],
)
def test_requirements_checked_with_clear_errors(pair, change, message) -> None:  # type: ignore[no-untyped-def]
    host, actor, _backend, _wire = pair
    exported = host.export(_cuda(host), region_of(b"w" * 10, device="cuda:0"), peer=1)
    with pytest.raises(TransportError, match=message):
        actor.import_("cuda_ipc", {**exported.handle, **change}, [], peer=0)


def test_disabled_without_the_environment_variable(pair, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    host, _actor, _backend, _wire = pair
    monkeypatch.delenv("PYISOLATE_ENABLE_CUDA_IPC")
    with pytest.raises(TransportError, match="PYISOLATE_ENABLE_CUDA_IPC=1"):
        host.export(_cuda(host), region_of(b"v", device="cuda:0"), peer=1)
    assert host.choose("cuda:0", 10**6, 1).name != "cuda_ipc"


def test_caps_message_steers_selection(pair) -> None:  # type: ignore[no-untyped-def]
    host, _actor, backend, _wire = pair
    assert host.choose("cuda:0", 10**6, 1).name == "cuda_ipc"  # unknown peer: assumed
    host.handle_control(1, {"op": "caps", "gpus": ["GPU-elsewhere"]})
    assert host.choose("cuda:0", 10**6, 1).name != "cuda_ipc"
    host.handle_control(1, {"op": "caps", "gpus": [backend.uuid]})
    assert host.choose("cuda:0", 10**6, 1).name == "cuda_ipc"


@pytest.mark.cuda
def test_real_cuda_tensor_round_trip(monkeypatch: pytest.MonkeyPatch, roundtrip) -> None:  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch.cuda is not available on this machine")
    monkeypatch.setenv("PYISOLATE_ENABLE_CUDA_IPC", "1")
    t = torch.arange(1 << 20, device="cuda", dtype=torch.float32)
    got = roundtrip(t[10:], "cuda_ipc")
    assert got.is_cuda
    assert torch.equal(got, t[10:])
    staged = roundtrip(t, "shm")  # a CPU transport stages through host memory
    assert staged.is_cuda
    assert torch.equal(staged, t)
