"""The codec extensions for torch tensors, out-of-band buffers and large bytes
(numpy's are in ``_arrays``; what they share is ``_transfer``).

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

from typing import TYPE_CHECKING, Any

from ..errors import ProtocolError, TransportError
from . import _segments
from ._base import Region, SharedSegment

if TYPE_CHECKING:
    from .._wire._codec import LargeBytes
    from ._codecs import OutOfBand

from ._transfer import (
    _check_bounds,
    _extent,
    _ints,
    _pack,
    _passes_fds,
    _pick,
    _receive,
    _send,
    _unpack,
)

# No public names: ``_codecs.install`` registers these functions by name.
__all__: list[str] = []


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
