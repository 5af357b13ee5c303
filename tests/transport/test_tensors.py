"""Tensors, arrays and buffers through the codec, over every CPU transport."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyisolate import transport as T
from pyisolate._wire import DecodeContext
from pyisolate.errors import ProtocolError
from pyisolate.transport import lowlevel as L

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

TRANSPORTS = ["inline", "shm", "file"]
DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
    torch.complex64,
    torch.complex128,
]


def _same(a, b) -> bool:  # type: ignore[no-untyped-def]
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def test_importing_transport_imports_neither_torch_nor_numpy() -> None:
    code = (
        "import sys, pyisolate.transport, pyisolate._internal.tensor_serializer;"
        "print('torch' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype(roundtrip, transport: str, dtype) -> None:  # type: ignore[no-untyped-def]
    t = (torch.randn(300, 70) * 10).to(dtype)
    assert _same(roundtrip(t, transport), t)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_views_keep_layout_and_values(roundtrip, transport: str) -> None:  # type: ignore[no-untyped-def]
    base = torch.randn(64, 80, 3)
    views = [
        base.transpose(0, 1),
        base[::3, 5:, 1],
        base[7],
        base.permute(2, 0, 1),
        base.expand(2, 64, 80, 3),
    ]
    got = roundtrip(views, transport)
    for v, g in zip(views, got, strict=True):
        assert _same(g, v)
        assert g.stride() == v.stride()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_zero_size_scalars_and_nesting(roundtrip, transport: str) -> None:  # type: ignore[no-untyped-def]
    value = {
        "a": [torch.zeros(0, 5), (torch.tensor(3.5), torch.empty(2, 0, dtype=torch.bfloat16))],
        "b": {"deep": [[torch.arange(100000)]]},
        "n": np.zeros((0,), np.int8),
    }
    got = roundtrip(value, transport)
    assert _same(got["a"][0], value["a"][0])
    assert _same(got["a"][1][0], value["a"][1][0])
    assert got["a"][1][1].shape == (2, 0)
    assert _same(got["b"]["deep"][0][0], value["b"]["deep"][0][0])
    assert got["n"].shape == (0,)


def test_conj_and_neg_views_are_resolved(roundtrip) -> None:  # type: ignore[no-untyped-def]
    c = torch.randn(100, dtype=torch.complex64)
    assert torch.equal(roundtrip(c.conj(), "shm"), c.conj())


def test_requires_grad(roundtrip) -> None:  # type: ignore[no-untyped-def]
    leaf = torch.nn.Parameter(torch.randn(50_000))
    got = roundtrip(leaf, "shm")
    assert type(got) is torch.Tensor
    assert got.requires_grad
    assert got.is_leaf
    assert torch.equal(got, leaf)
    with pytest.raises(TypeError, match=r"non-leaf.*detach"):
        roundtrip(leaf * 2, "shm")


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(3, 3).to_sparse(),
        lambda: torch.empty(3, device="meta"),
        lambda: torch.quantize_per_tensor(torch.randn(3), 0.1, 0, torch.qint8),
        lambda: np.array([object()]),
    ],
    ids=["sparse", "meta", "quantized", "object-array"],
)
@pytest.mark.filterwarnings("ignore:.*quantized:UserWarning")
def test_objects_that_cannot_move_raise_typeerror_naming_them(roundtrip, make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="cannot send"):
        roundtrip(make(), "shm")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_receiver_writes_do_not_reach_sender(roundtrip, transport: str) -> None:  # type: ignore[no-untyped-def]
    for t in (torch.ones(1 << 18), T.empty(1 << 18)):
        t.fill_(1.0)
        got = roundtrip(t, transport)
        got.fill_(7.0)
        assert bool((t == 1.0).all())


def test_shared_memory_goes_with_no_copy_and_forwards_with_none(roundtrip) -> None:  # type: ignore[no-untyped-def]
    t = T.empty((256, 1024), dtype=torch.float32)
    t.fill_(3.0)
    assert T.is_shared(t)
    a, b = roundtrip((t, t[10:20]), "shm")
    assert a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()  # one storage
    assert T.is_shared(a)
    assert _same(b, t[10:20])
    c = roundtrip(a, "shm")  # forwarding a received tensor: still shared
    assert T.is_shared(c)
    assert _same(c, t)
    a[0, 0] = 9.0  # the receiver wrote: its copy no longer matches the segment
    assert not T.is_shared(a)
    d = roundtrip(a, "shm")
    assert d[0, 0] == 9.0
    assert t[0, 0] == 3.0


def test_share_memory_in_place(roundtrip) -> None:  # type: ignore[no-untyped-def]
    t = torch.randn(1000, 100)
    expected = t.clone()
    assert T.share_memory_(t) is t
    assert T.is_shared(t)
    assert torch.equal(t, expected)
    assert torch.equal(roundtrip(t, "shm"), expected)


def test_numpy_arrays(roundtrip) -> None:  # type: ignore[no-untyped-def]
    a = np.arange(300_000, dtype=np.float32).reshape(600, 500)
    rec = np.zeros(1000, dtype=[("x", "<i4"), ("y", "<f8", (2,))])
    rec["x"] = np.arange(1000)
    values = [a, np.asfortranarray(a), a[::3, ::-2], rec, np.float16(1) * np.ones(7)]
    for transport in TRANSPORTS:
        got = roundtrip(values, transport)
        for v, g in zip(values, got, strict=True):
            assert g.dtype == v.dtype
            assert np.array_equal(g, v)
    shared = T.empty_array((1000, 100), "float64")
    shared[:] = 2.0
    got = roundtrip(shared, "shm")
    got[:] = 5.0
    assert (shared == 2.0).all()


def test_out_of_band_buffers(roundtrip) -> None:  # type: ignore[no-untyped-def]
    data = bytes(range(256)) * 4096
    got = roundtrip(T.OutOfBand(data), "shm")
    assert isinstance(got, memoryview)
    assert got == data
    assert roundtrip(T.OutOfBand(b""), "shm") == b""


def test_many_tensors_in_one_message(roundtrip) -> None:  # type: ignore[no-untyped-def]
    ts = [torch.full((20_000,), float(i)) for i in range(300)]  # more than one sendmsg's fds
    got = roundtrip(ts, "shm")
    assert all(_same(a, b) for a, b in zip(got, ts, strict=True))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    dtype=st.sampled_from(DTYPES),
    shape=st.lists(st.integers(0, 9), min_size=0, max_size=4),
    transpose=st.booleans(),
    transport=st.sampled_from(["inline", "shm"]),
)
def test_property_round_trip(roundtrip, dtype, shape, transpose, transport) -> None:  # type: ignore[no-untyped-def]
    t = (torch.randn(shape) * 100).to(dtype)
    if transpose and t.dim() >= 2:
        t = t.transpose(0, -1)
    got = roundtrip(t, transport, inline_threshold=0)
    assert _same(got, t)
    assert t.numel() == 0 or got.stride() == t.stride()


def test_hostile_layout_is_refused(codec, roundtrip) -> None:  # type: ignore[no-untyped-def]
    import msgpack

    session = L.TransportSession(send_control=lambda p, b: None, transport="inline")
    from pyisolate._wire import EncodeContext

    body = codec.encode(torch.zeros(4), EncodeContext(session=session))
    ext = msgpack.unpackb(body, raw=False)
    inner = msgpack.unpackb(ext.data, raw=False)
    for change in (
        {"sh": [1000]},
        {"so": 3},
        {"st": [-1]},
        {"dt": "__class__"},
        {"x": {"fd": 5, "nfd": 1}},
    ):
        bad = msgpack.packb(msgpack.ExtType(ext.code, msgpack.packb({**inner, **change})))
        with pytest.raises(ProtocolError):
            codec.decode(bad, DecodeContext(session=session))
