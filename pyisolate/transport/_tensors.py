"""The codec extensions for torch tensors, numpy arrays and out-of-band buffers.

This is where values meet transports: a tensor is reduced to a layout (dtype,
shape, strides, offset, device, requires_grad) that travels in the envelope and
a :class:`Region` of bytes that a transport moves. :func:`._codecs.install`
registers these functions by type *name*, with stubs that import this module on
first use, so importing pyisolate never imports torch or numpy; they are
imported here only when such an object is encoded or decoded.

Choices, documented for users:

* Views keep their layout: only the span of storage a view covers is copied
  (non-contiguous strides included); a view of shared memory is sent with its
  whole segment, no copy. Two views of one shared storage in one message
  arrive sharing one storage.
* A leaf tensor that requires grad arrives as a leaf that requires grad (its
  data, not its history or ``.grad``); a non-leaf one raises TypeError: send
  ``t.detach()`` (torch.multiprocessing's rule).
* Sparse, quantized, nested, meta tensors, tensor subclasses other than
  ``nn.Parameter`` (which arrives as a plain tensor) and object arrays raise
  TypeError naming what cannot travel.
* Every handle from a peer is checked against the memory actually received
  before anything is built on it: a hostile peer cannot make us read out of
  bounds.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import attrs
import msgpack

from ..errors import ProtocolError, TransportError
from . import _segments
from ._base import Exported, Imported, Region, SharedSegment, Transport
from ._fdpass import MAX_FDS
from ._lazy_session import LazySession
from ._session import TransportSession

if TYPE_CHECKING:
    from .._wire._codec import LargeBytes
    from ._codecs import OutOfBand

# No public names: ``_codecs.install`` registers these functions by name.
__all__: list[str] = []

_MAX_DIMS = 64


# -- per-message state ------------------------------------------------------------
#
# Contexts may outlive their message (a codec may keep the last one), so
# nothing here may hold memory or fds through them: the encode state rides in
# ``ctx.keepalive`` (cleared by the core once the message is sent) and the
# decode state holds imported buffers weakly.


@attrs.define
class _Sent:
    by_storage: dict[tuple[str, int], dict[str, Any]] = attrs.Factory(dict)


@attrs.define
class _Received:
    fds: list[int]
    by_fd: dict[int, tuple[weakref.ref[Any], Imported]] = attrs.Factory(dict)


_received: dict[int, tuple[weakref.ref[Any], _Received]] = {}


def _sent_state(ctx: Any) -> _Sent:
    keepalive = ctx.keepalive
    if keepalive and type(keepalive[0]) is _Sent:
        return keepalive[0]  # type: ignore[no-any-return]
    state = _Sent()
    keepalive.insert(0, state)
    return state


def _received_state(ctx: Any) -> _Received:
    key = id(ctx)
    found = _received.get(key)
    if found is not None and found[0]() is ctx and found[1].fds is getattr(ctx, "fds", None):
        return found[1]

    def forget(_ref: Any) -> None:
        _received.pop(key, None)

    state = _Received(ctx.fds)
    _received[key] = (weakref.ref(ctx, forget), state)
    return state


def _session(ctx: Any) -> TransportSession:
    """The context's session (started now if it is the runtime's lazy one)."""
    session = ctx.session
    if isinstance(session, LazySession):
        return session.get()
    if isinstance(session, TransportSession):
        return session
    raise TransportError(
        "no transport session for this message: give EncodeContext/DecodeContext "
        "session=pyisolate.transport.lowlevel.TransportSession(...) (the runtime always does)"
    )


def _pick(ctx: Any, device: str, nbytes: int) -> Transport:
    """The transport for this region: no fd-passing one once a message carries
    as many fds as one sendmsg can (inline raises if the rest is too big)."""
    return _session(ctx).choose(device, nbytes, ctx.peer, fds_left=len(ctx.fds) < MAX_FDS)


def _passes_fds(ctx: Any, transport: Transport) -> bool:
    return _session(ctx).fd_passing(transport)


def _send(
    ctx: Any, transport: Transport, region: Region, dedupe: int | None = None
) -> dict[str, Any]:
    """Move ``region`` with ``transport``; returns the transfer record that the
    envelope carries. Zero-copy exports of one storage are made once per message."""
    state = _sent_state(ctx)
    key = (transport.name, dedupe) if dedupe is not None else None
    if key is not None and key in state.by_storage:
        return state.by_storage[key]
    exported: Exported = _session(ctx).export(transport, region, ctx.peer)
    record = {
        "t": transport.name,
        "h": exported.handle,
        "fd": len(ctx.fds),
        "nfd": len(exported.fds),
    }
    ctx.fds.extend(exported.fds)
    ctx.keepalive.extend(exported.keepalive)
    ctx.keepalive.append(region.owner)
    if key is not None:
        state.by_storage[key] = record
    return record


def _receive(ctx: Any, record: Any) -> Imported:
    """Import a transfer record, taking the fds it names from ``ctx.fds``
    (replaced by -1: the core closes whatever fds remain afterwards)."""
    if not isinstance(record, dict):
        raise ProtocolError("malformed transfer record")
    first, count = record.get("fd"), record.get("nfd")
    if type(first) is not int or type(count) is not int or first < 0 or count < 0:
        raise ProtocolError("malformed transfer record")
    if first + count > len(ctx.fds):
        raise ProtocolError(
            f"transfer names fds {first}..{first + count} but {len(ctx.fds)} arrived"
        )
    state = _received_state(ctx)
    if count and first in state.by_fd:  # a second view of a storage already imported
        buffer_ref, shell = state.by_fd[first]
        buffer = buffer_ref()
        if buffer is not None:
            return attrs.evolve(shell, buffer=buffer)
        raise ProtocolError("a shared segment was dropped while its message was decoded")
    fds = ctx.fds[first : first + count]
    if any(fd < 0 for fd in fds):
        raise ProtocolError("a file descriptor was named by two transfers")
    ctx.fds[first : first + count] = [-1] * count
    imported = _session(ctx).import_(str(record.get("t")), record.get("h"), list(fds), ctx.peer)
    if count and imported.buffer is not None:
        # weakly: the Imported itself (it holds the buffer) is rebuilt on a hit
        state.by_fd[first] = (weakref.ref(imported.buffer), attrs.evolve(imported, buffer=None))
    return imported


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(payload: bytes) -> dict[str, Any]:
    body = msgpack.unpackb(payload, raw=False, max_bin_len=64 << 20)
    if not isinstance(body, dict):
        raise ProtocolError("malformed tensor payload")
    return body


def _ints(value: Any, what: str, limit: int = _MAX_DIMS) -> list[int]:
    if (
        not isinstance(value, list)
        or len(value) > limit
        or not all(type(v) is int and v >= 0 for v in value)
    ):
        raise ProtocolError(f"malformed {what}")
    return value


def _extent(shape: list[int], strides: list[int]) -> int:
    """Elements spanned from the first to the last element, inclusive."""
    if any(n == 0 for n in shape):
        return 0
    return sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + 1


def _check_bounds(imported: Imported, elem_offset: int, span: int, itemsize: int) -> None:
    if span and (elem_offset < 0 or (elem_offset + span) * itemsize > imported.nbytes):
        raise ProtocolError("tensor layout reaches beyond the memory that was sent")


# -- torch ------------------------------------------------------------------------


def _encode_tensor(t: Any, ctx: Any) -> bytes:
    import torch

    name = f"{type(t).__module__}.{type(t).__qualname__}"
    if type(t) not in (torch.Tensor, torch.nn.Parameter):
        raise TypeError(f"cannot send a {name}: only plain torch.Tensor (and nn.Parameter) travel")
    if t.layout != torch.strided or t.is_quantized or t.is_nested:
        raise TypeError(
            f"cannot send a torch.Tensor with layout {t.layout}"
            f"{' (quantized)' if t.is_quantized else ''}: convert it to a dense tensor"
        )
    if t.device.type not in ("cpu", "cuda"):
        raise TypeError(f"cannot send a torch.Tensor on device {t.device}: move it to cpu or cuda")
    if t.requires_grad and t.grad_fn is not None:
        raise TypeError(
            "cannot send a non-leaf torch.Tensor that requires grad "
            f"(grad_fn={type(t.grad_fn).__name__}): send tensor.detach()"
        )
    requires_grad = bool(t.requires_grad)
    t = t.detach()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    device, itemsize = str(t.device), t.element_size()
    body: dict[str, Any] = {
        "dt": str(t.dtype).removeprefix("torch."),
        "sh": list(t.shape),
        "st": list(t.stride()),
        "dev": device,
        "rg": requires_grad,
        "so": 0,
        "x": None,
    }
    span = _extent(body["sh"], body["st"]) * itemsize
    if span:
        storage = t.untyped_storage()
        transport = _pick(ctx, device, span)
        whole = storage.nbytes()
        if transport.name == "cuda_ipc":
            region = Region(whole, _unused, device=device, storage=storage, owner=t)
            body["so"], dedupe = t.storage_offset(), storage.data_ptr()
        elif _passes_fds(ctx, transport) and (shared := _shared_segment(storage, device)):
            region = Region(whole, _copy_from(torch, storage, 0, whole), shared=shared, owner=t)
            body["so"], dedupe = t.storage_offset(), storage.data_ptr()
        else:  # one copy, of the span this view covers, strides kept
            start = t.storage_offset() * itemsize
            region = Region(span, _copy_from(torch, storage, start, span), owner=t)
            dedupe = None
        body["x"] = _send(ctx, transport, region, dedupe)
    return _pack(body)


def _unused(buf: memoryview) -> None:
    raise TransportError("device memory cannot be copied into a host buffer here")


def _shared_segment(storage: Any, device: str) -> SharedSegment | None:
    """Where ``storage`` already lives in a sendable segment, if it does and this
    process did not write to its private copy since receiving it."""
    if device != "cpu":
        return None
    entry = _segments.find_mapping(address=storage.data_ptr())
    if entry is None or storage.nbytes() > entry.size:
        return None
    return _segments.shared_segment(entry, 0)


def _copy_from(torch: Any, storage: Any, start: int, nbytes: int) -> Any:
    def write_to(buf: memoryview) -> None:
        src = torch.empty(0, dtype=torch.uint8, device=storage.device).set_(
            storage, start, (nbytes,), (1,)
        )
        torch.frombuffer(buf, dtype=torch.uint8).copy_(src)

    return write_to


def _torch_dtype(torch: Any, name: Any) -> Any:
    dtype = getattr(torch, name, None) if isinstance(name, str) and name.isidentifier() else None
    if not isinstance(dtype, torch.dtype):
        raise ProtocolError(f"unknown torch dtype {name!r}")
    return dtype


def _decode_tensor(payload: bytes, ctx: Any) -> Any:
    import torch

    body = _unpack(payload)
    dtype = _torch_dtype(torch, body.get("dt"))
    shape, strides = _ints(body.get("sh"), "shape"), _ints(body.get("st"), "strides")
    offset, device = body.get("so"), str(body.get("dev"))
    if len(shape) != len(strides) or type(offset) is not int:
        raise ProtocolError("malformed tensor layout")
    if body.get("x") is None:
        if _extent(shape, strides):
            raise ProtocolError("tensor with elements but no data")
        t = torch.empty_strided(shape, strides, dtype=dtype)
    else:
        imported = _receive(ctx, body["x"])
        itemsize = torch.empty(0, dtype=dtype).element_size()
        _check_bounds(imported, offset, _extent(shape, strides), itemsize)
        if imported.storage is not None:  # cuda_ipc
            t = torch.empty(0, dtype=dtype, device=imported.storage.device)
            t.set_(imported.storage, offset, shape, strides)
        else:
            if imported.offset % itemsize:
                raise ProtocolError("misaligned tensor data")
            whole = torch.frombuffer(imported.buffer, dtype=torch.uint8)
            t = torch.empty(0, dtype=dtype).set_(
                whole.untyped_storage(), imported.offset // itemsize + offset, shape, strides
            )
    if device != "cpu" and t.device.type == "cpu":
        try:
            t = t.to(device)
        except Exception as exc:
            raise TransportError(f"cannot move a received tensor to {device}: {exc}") from None
    if body.get("rg"):
        t.requires_grad_(True)
    return t


# -- numpy ------------------------------------------------------------------------


def _encode_ndarray(arr: Any, ctx: Any) -> bytes:
    import numpy as np

    if arr.dtype.hasobject:
        raise TypeError(
            f"cannot send a numpy.ndarray of dtype {arr.dtype}: it holds Python objects"
        )
    if type(arr) is not np.ndarray:
        arr = np.asarray(arr)  # subclasses (np.matrix, masked arrays) travel as plain arrays
    fortran = bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
    if fortran:
        arr = arr.T
    elif not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    descr = np.lib.format.dtype_to_descr(arr.dtype)
    body: dict[str, Any] = {"dt": descr, "sh": list(arr.shape), "f": fortran, "x": None}
    if arr.nbytes:
        transport = _pick(ctx, "cpu", arr.nbytes)
        entry, start = _array_mapping(arr)
        shared = None
        if entry is not None and _passes_fds(ctx, transport):
            shared = _segments.shared_segment(entry, start)
        region = Region(arr.nbytes, _ndarray_writer(np, arr), shared=shared, owner=arr)
        body["x"] = _send(ctx, transport, region)
    return _pack(body)


def _array_mapping(arr: Any) -> tuple[_segments.Mapping | None, int]:
    import mmap

    base = arr
    while getattr(base, "base", None) is not None and not isinstance(base, mmap.mmap):
        base = base.base
    if isinstance(base, mmap.mmap):
        entry = _segments.find_mapping(mm=base)
        if entry is not None:
            return entry, arr.__array_interface__["data"][0] - entry.address
    return None, 0


def _ndarray_writer(np: Any, arr: Any) -> Any:
    def write_to(buf: memoryview) -> None:
        np.copyto(np.frombuffer(buf, dtype=np.uint8), arr.reshape(-1).view(np.uint8))

    return write_to


def _numpy_dtype(np: Any, descr: Any) -> Any:
    def as_tuples(d: Any) -> Any:
        # msgpack turned the descr's tuples into lists: [name, descr(, shape)] per field
        if not isinstance(d, list):
            return d
        fields = []
        for name, sub, *shape in d:
            fields.append(
                (
                    tuple(name) if isinstance(name, list) else name,
                    as_tuples(sub),
                    *(tuple(x) for x in shape),
                )
            )
        return fields

    try:
        dtype = np.lib.format.descr_to_dtype(as_tuples(descr))
    except Exception:
        raise ProtocolError(f"unknown numpy dtype {descr!r}") from None
    if dtype.hasobject:
        raise ProtocolError("refusing a numpy dtype that holds Python objects")
    return dtype


def _decode_ndarray(payload: bytes, ctx: Any) -> Any:
    import numpy as np

    body = _unpack(payload)
    dtype = _numpy_dtype(np, body.get("dt"))
    shape = _ints(body.get("sh"), "shape")
    if body.get("x") is None:
        arr = np.empty(shape, dtype=dtype)
    else:
        imported = _receive(ctx, body["x"])
        count = 1
        for n in shape:
            count *= n
        _check_bounds(imported, 0, count, dtype.itemsize)
        arr = np.ndarray(shape, dtype=dtype, buffer=imported.buffer, offset=imported.offset)
    return arr.T if body.get("f") else arr


# -- out-of-band buffers ----------------------------------------------------------


def _encode_oob(obj: OutOfBand, ctx: Any) -> bytes:
    view = memoryview(obj.data).cast("B")
    if not view.c_contiguous:
        raise TypeError("OutOfBand needs a contiguous buffer")
    if not view.nbytes:
        return _pack({"x": None})

    def write_to(buf: memoryview) -> None:
        buf[:] = view

    region = Region(view.nbytes, write_to, owner=obj.data)
    return _pack({"x": _send(ctx, _pick(ctx, "cpu", view.nbytes), region)})


def _decode_oob(payload: bytes, ctx: Any) -> memoryview:
    body = _unpack(payload)
    if body.get("x") is None:
        return memoryview(bytearray())
    imported = _receive(ctx, body["x"])
    return memoryview(imported.buffer)[imported.offset : imported.offset + imported.nbytes]


# -- large bytes -------------------------------------------------------------------
#
# The codec wraps bytes-likes above the inline threshold in LargeBytes (see
# pyisolate._wire._codec); here they become a transfer like an OutOfBand
# buffer and are rebuilt as their type: "b" bytes, "ba" bytearray.


def _encode_large_bytes(obj: LargeBytes, ctx: Any) -> bytes:
    data = obj.data
    kind = "ba" if type(data) is bytearray else "b"
    view = memoryview(data)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    view = view.cast("B")
    transport = _pick(ctx, "cpu", view.nbytes)
    if transport.name == "inline":  # forced (PYISOLATE_TRANSPORT) or out of fds
        return _pack({"k": kind, "b": view})

    def write_to(buf: memoryview) -> None:
        buf[:] = view

    region = Region(view.nbytes, write_to, owner=data)
    return _pack({"k": kind, "x": _send(ctx, transport, region)})


def _decode_large_bytes(payload: bytes, ctx: Any) -> bytes | bytearray:
    body = _unpack(payload)
    kind = body.get("k")
    if kind not in ("b", "ba"):
        raise ProtocolError("malformed large bytes")
    if "b" in body:
        raw = body["b"]
        if not isinstance(raw, bytes):
            raise ProtocolError("malformed large bytes")
        return raw if kind == "b" else bytearray(raw)
    imported = _receive(ctx, body.get("x"))
    if imported.buffer is None:
        raise ProtocolError("large bytes arrived without a buffer")
    # One copy, out of the mapping: bytes own their memory, and the segment
    # goes back to its sender as soon as this returns.
    start, stop = imported.offset, imported.offset + imported.nbytes
    with memoryview(imported.buffer) as whole, whole[start:stop] as view:
        return bytes(view) if kind == "b" else bytearray(view)


# -- numpy scalars ---------------------------------------------------------------


def _encode_np_scalar(value: Any, ctx: Any) -> bytes:
    """[descr, raw bytes]; numpy strings as ["U", str] / ["S", bytes] (their
    dtype's size is their length, and "" has none)."""
    import numpy as np

    if isinstance(value, np.str_):
        return _pack(["U", str(value)])
    if isinstance(value, np.bytes_):
        return _pack(["S", bytes(value)])
    dtype = value.dtype
    if dtype.hasobject:
        raise TypeError(f"cannot send a numpy scalar of dtype {dtype}: it holds Python objects")
    return _pack([np.lib.format.dtype_to_descr(dtype), value.tobytes()])


def _decode_np_scalar(payload: bytes, ctx: Any) -> Any:
    import numpy as np

    body = msgpack.unpackb(payload, raw=False, max_bin_len=1 << 20, max_str_len=1 << 20)
    if not (isinstance(body, list) and len(body) == 2):
        raise ProtocolError("malformed numpy scalar")
    descr, raw = body
    if descr == "U" and isinstance(raw, str):
        return np.str_(raw)
    if descr == "S" and isinstance(raw, bytes):
        return np.bytes_(raw)
    dtype = _numpy_dtype(np, descr)
    if not isinstance(raw, bytes) or len(raw) != dtype.itemsize or not dtype.itemsize:
        raise ProtocolError(f"malformed numpy scalar of dtype {dtype}")
    return np.frombuffer(raw, dtype=dtype, count=1)[0]
