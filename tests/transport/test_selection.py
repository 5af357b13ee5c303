"""Choosing a transport: override, threshold, shm/file fallback, doctor rows."""

from __future__ import annotations

import logging

import pytest

from pyisolate import transport as T
from pyisolate.transport import _detect
from pyisolate.transport import lowlevel as L


def _session(**kwargs) -> L.TransportSession:  # type: ignore[no-untyped-def]
    return L.TransportSession(send_control=lambda peer, body: None, **kwargs)


def test_seed_feature_detection_snippet_works() -> None:
    from pyisolate._internal.tensor_serializer import _check_shm_availability

    assert _check_shm_availability() in (True, False)
    assert _check_shm_availability is _detect.check_shm_availability


def test_best_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYISOLATE_TRANSPORT", raising=False)
    s = _session(inline_threshold=1000)
    assert s.choose("cpu", 1000, 1).name == "inline"
    assert s.choose("cpu", 1001, 1).name == ("shm" if _detect.check_shm_availability() else "file")
    assert s.choose("cuda:0", 10**6, 1).name != "cuda_ipc"  # not enabled


@pytest.mark.parametrize("name", ["inline", "shm", "file"])
def test_env_override(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("PYISOLATE_TRANSPORT", name)
    assert _session().choose("cpu", 10, 1).name == name
    assert _session(transport="inline").choose("cpu", 10**7, 1).name == "inline"  # argument wins


def test_unknown_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYISOLATE_TRANSPORT", "carrier-pigeon")
    with pytest.raises(ValueError, match="carrier-pigeon"):
        _session()


def test_fallback_to_file_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, roundtrip, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    monkeypatch.delenv("PYISOLATE_TRANSPORT", raising=False)
    monkeypatch.setattr(_detect, "check_shm_availability", lambda *a, **k: False)
    s = _session(workdir=str(tmp_path))
    with caplog.at_level(logging.WARNING, "pyisolate.transport"):
        assert s.choose("cpu", 10**6, 1).name == "file"
    assert "/dev/shm" in caplog.text
    t = torch.randn(100_000)
    assert torch.equal(roundtrip(t, session=s), t)
    assert not list(tmp_path.iterdir())


def test_shm_check_rejects_missing_or_small(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert not _detect.check_shm_availability(str(tmp_path / "missing"))
    assert not _detect.check_shm_availability(str(tmp_path), min_bytes=1 << 62)


def test_capabilities_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYISOLATE_ENABLE_CUDA_IPC", raising=False)
    rows = dict(T.capabilities())
    assert {"/dev/shm", "CPU tensor transport", "CUDA IPC"} <= rows.keys()
    assert "PYISOLATE_ENABLE_CUDA_IPC" in rows["CUDA IPC"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in T.capabilities())
