"""The transport registry: what each transport carries, the order they are
tried, the sending order a session is given, receiving by name, and the one
codec install path."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from pyisolate import transport as T
from pyisolate.errors import TransportError
from pyisolate.transport import _detect, _registry
from pyisolate.transport import lowlevel as L
from pyisolate.transport.testing import FakeCudaIpcBackend, imported_bytes, region_of

if TYPE_CHECKING:
    from collections.abc import Iterator

BIG, SMALL = 1 << 20, 100


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No forced transport, CUDA IPC off, and registrations undone after the test."""
    monkeypatch.delenv("PYISOLATE_TRANSPORT", raising=False)
    monkeypatch.delenv("PYISOLATE_ENABLE_CUDA_IPC", raising=False)
    assert T.FakeTransport  # registered (by its import) before the snapshot
    monkeypatch.setattr(_registry, "_specs", dict(_registry._specs))
    return


def _session(**kwargs) -> L.TransportSession:  # type: ignore[no-untyped-def]
    kwargs.setdefault("send_control", lambda peer, body: None)
    return L.TransportSession(**kwargs)


CPU_LARGE = "shm" if _detect.check_shm_availability() else "file"


def test_the_default_order_is_cuda_ipc_shm_file_inline() -> None:
    order = L.default_order()
    assert [s.name for s in order] == ["cuda_ipc", "shm", "file", "inline"]
    by_name = {s.name: s for s in order}
    assert by_name["cuda_ipc"].devices == {"cuda"}
    assert by_name["cuda_ipc"].control
    assert by_name["shm"].fd_passing
    assert by_name["shm"].band is T.Band.LARGE
    assert by_name["file"].fd_passing
    assert by_name["file"].band is T.Band.LARGE
    assert not by_name["inline"].fd_passing
    assert by_name["inline"].band is T.Band.ANY
    # importing FakeTransport registers it, never ranked (only forced or given)
    assert T.FakeTransport.name in {s.name for s in L.registered_transports()}
    assert "transport order" in dict(T.capabilities())


def test_selection_walks_the_order() -> None:
    s = _session(inline_threshold=1000)
    assert s.choose("cpu", 1000, 1).name == "inline"  # at the threshold: the envelope
    assert s.choose("cpu", 1001, 1).name == CPU_LARGE
    assert s.choose("cuda:0", BIG, 1).name == CPU_LARGE  # no CUDA IPC: staged through the host
    s.close()


def test_cuda_ipc_comes_first_when_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYISOLATE_ENABLE_CUDA_IPC", "1")
    s = _session(cuda_backend=FakeCudaIpcBackend())
    assert s.choose("cuda:0", BIG, 1).name == "cuda_ipc"
    assert s.choose("cuda:0", SMALL, 1).name == "cuda_ipc"  # any size
    assert s.choose("cpu", BIG, 1).name == CPU_LARGE  # it carries CUDA memory only
    # without a control channel its releases could never come back: never chosen
    lone = L.TransportSession(send_control=None, cuda_backend=FakeCudaIpcBackend())
    assert lone.choose("cuda:0", BIG, 1).name == CPU_LARGE
    assert lone.control is None
    s.close()
    lone.close()


def test_a_message_out_of_fds_goes_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _session()
    assert s.choose("cpu", BIG, 1, fds_left=True).name == CPU_LARGE
    assert s.choose("cpu", BIG, 1, fds_left=False).name == "inline"
    monkeypatch.setenv("PYISOLATE_TRANSPORT", "file")
    forced = _session()
    assert forced.choose("cpu", SMALL, 1).name == "file"  # forced: any size
    assert forced.choose("cpu", BIG, 1, fds_left=False).name == "inline"
    s.close()
    forced.close()


def test_a_registered_preference_joins_the_default_order() -> None:
    fake = T.FakeTransport()
    T.register_transport(T.TransportSpec("mine", lambda _s: fake, preference=15))
    assert [s.name for s in L.default_order()] == ["cuda_ipc", "mine", "shm", "file", "inline"]
    s = _session()
    assert s.choose("cpu", BIG, 1) is fake  # before shm: lower preference
    s.close()


def test_a_given_order_replaces_the_default() -> None:
    fake = T.FakeTransport()
    s = _session(transports=[fake, "shm"])
    assert [spec.name for spec in s.order] == ["fake", "shm"]
    assert s.choose("cpu", SMALL, 1) is fake
    assert s.choose("cpu", BIG, 1) is fake
    only_shm = _session(transports=["shm"])
    # small ones fit no transport of the order: inline, the last resort
    assert only_shm.choose("cpu", SMALL, 1).name == "inline"
    if _detect.check_shm_availability():
        assert only_shm.choose("cpu", BIG, 1).name == "shm"
    s.close()
    only_shm.close()


def test_an_instance_takes_the_capabilities_registered_for_its_name() -> None:
    (spec,) = L.resolve_transports([L.ShmTransport()])
    assert spec.fd_passing
    assert spec.band is T.Band.LARGE
    (custom,) = L.resolve_transports([T.FakeTransport()])
    assert not custom.fd_passing
    assert custom.devices == {"cpu"}


@pytest.mark.parametrize(
    ("items", "error", "match"),
    [
        (["carrier-pigeon"], ValueError, "unknown transport 'carrier-pigeon'.*inline"),
        (["shm", "shm"], ValueError, "given twice"),
        ([object()], TypeError, "Transport instances, TransportSpec"),
    ],
)
def test_bad_orders_are_refused_naming_the_fix(items, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        L.resolve_transports(items)
    assert L.resolve_transports(["shm", "inline"])  # positive control


def test_the_environment_forces_a_transport_over_a_given_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYISOLATE_TRANSPORT", "inline")
    s = _session(transports=[T.FakeTransport()])
    assert s.choose("cpu", BIG, 1).name == "inline"
    monkeypatch.setenv("PYISOLATE_TRANSPORT", "fake")  # registered, not ranked: forceable
    assert _session().choose("cpu", BIG, 1).name == "fake"
    s.close()


def test_any_registered_transport_is_received_by_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    receiver = _session(transports=["inline"], workdir=str(tmp_path))
    sender = L.FileTransport(str(tmp_path))
    exported = sender.export(region_of(b"abc" * 1000), peer=1)
    handle, fds = exported.handle, [os.dup(fd) for fd in exported.fds]
    del exported  # "sent": the sender's fds close
    imported = receiver.import_("file", handle, fds, peer=0)
    assert imported_bytes(imported) == b"abc" * 1000
    assert "file" in receiver.transports  # made on first receipt
    del imported
    receiver.close()


def test_an_unregistered_name_is_refused_and_its_fds_closed() -> None:
    s = _session()
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(TransportError, match=r"unknown transport 'nope'.*register it"):
        s.import_("nope", {}, [r], peer=3)
    with pytest.raises(OSError):
        os.fstat(r)  # closed for us: nobody else would
    s.close()


def test_encoding_without_a_session_names_the_fix() -> None:
    from pyisolate._wire import Codec, EncodeContext, ExtRegistry

    registry = ExtRegistry()
    L.install(registry)
    codec = Codec(registry)
    with pytest.raises(TransportError, match=r"lowlevel\.TransportSession"):
        codec.encode(T.OutOfBand(b"x" * 100), EncodeContext(peer=1))
    s = _session()
    ctx = EncodeContext(peer=1, session=s)
    assert codec.encode(T.OutOfBand(b"x" * 100), ctx)  # positive control
    ctx.keepalive.clear()
    s.close()


def test_the_one_install_path_is_lazy_and_is_what_actors_use() -> None:
    code = (
        "import sys\n"
        "from pyisolate._wire import ExtRegistry, default_registry\n"
        "from pyisolate.transport import lowlevel as L\n"
        "import pyisolate.actors._child\n"  # what an actor imports: installs into the default
        "mine = ExtRegistry(); L.install(mine)\n"
        "for code in range(8, 13):\n"
        "    assert mine.decoder(code) is not None, code\n"
        "    assert default_registry.decoder(code).__name__ == mine.decoder(code).__name__\n"
        "heavy = [m for m in ('torch', 'numpy', 'pyisolate.transport._tensors',\n"
        "         'pyisolate.transport._session') if m in sys.modules]\n"
        "print(heavy); sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_public_namespaces_are_split() -> None:
    for wiring in ("TransportSession", "install", "send_fds", "LazySession", "ShmTransport"):
        assert wiring not in T.__all__
        assert wiring in L.__all__
    for public in ("empty", "OutOfBand", "FakeTransport", "Transport", "TransportSpec"):
        assert public in T.__all__
    assert T.__all__ == sorted(T.__all__, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
