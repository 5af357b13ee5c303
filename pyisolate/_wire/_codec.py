"""The value codec: msgpack plus a registry of extension types.

Natives (None, bool, int, float, str, bytes, list, dict) are msgpack's own.
Tuples, sets and frozensets round-trip as themselves. Other types travel only
if an :class:`ExtRegistry` knows them: actor references (the runtime registers
them), tensors and arrays (the transport layer registers them lazily, by type
name, so that nothing here imports torch or numpy), and users' own types.

An object nobody knows raises ``TypeError`` naming its type, in the sender,
before anything is sent; so does an integer msgpack cannot hold (below
-2**63 or above 2**64 - 1).

Large bytes go out of band. ``bytes``, ``bytearray`` and ``memoryview`` values
above the transport session's inline threshold (64 KiB, never less), anywhere
in a value, travel beside the envelope like tensors (shared memory), so a
100 MiB result is no bigger an envelope than a small one. They arrive as the same type:
``bytes`` as ``bytes``, ``bytearray`` as ``bytearray``; a ``memoryview``
arrives as ``bytes``, as a small one always did, so that the type never
depends on the size (send :class:`pyisolate.transport.OutOfBand` for a
zero-copy view). Small ones stay inline and cost nothing more: a message is
packed as usual and only one over 64 KiB that holds a bin32 (msgpack's
marker for bytes of 64 KiB or more) is looked into and packed again, with
the extension objects of the first pass replayed, not encoded twice.
This needs a session in the context (the runtime always passes one); without
one, bytes stay inline.

Decoding is bounded: total size, container lengths and extension nesting are
capped by :class:`Limits`; every failure becomes a ProtocolError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

from ..errors import ProtocolError
from ._contexts import DecodeContext, EncodeContext, Limits
from ._registry import ExtRegistry, default_registry

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "Codec",
    "DecodeContext",
    "EncodeContext",
    "ExtRegistry",
    "LargeBytes",
    "Limits",
    "default_registry",
    "register_type",
]

# Extension codes below 32 are reserved for pyisolate; users register 32..127.
EXT_TUPLE = 0
EXT_SET = 1
EXT_FROZENSET = 2
USER_EXT_MIN = 32

#: Only messages longer than this are looked into for large bytes: bytes up
#: to 64 KiB always stay inline (a session's lower inline threshold is for
#: tensors), so that the check is one comparison for every smaller message.
_SCAN_FLOOR = 0xFFFF
_BIN32 = b"\xc6"  # msgpack's bin32 marker: bytes of 65536 or more
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class LargeBytes:
    """A ``bytes``/``bytearray``/``memoryview`` value the codec sends out of
    band (the transport layer registers its encoder by this class's name)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = data


def register_type(
    cls: type,
    code: int,
    encode: Callable[[Any], Any],
    decode: Callable[[Any], Any],
) -> None:
    """Let instances of ``cls`` travel in messages.

    ``encode(obj)`` returns any value pyisolate can send (natives, tuples,
    other registered types...); ``decode(value)`` rebuilds the object. ``code``
    is a number in 32..127 that both sides agree on. Register at import time of
    the module that defines ``cls``, so that the host and every actor that
    imports it know the type::

        pyisolate.register_type(Point, 40, lambda p: (p.x, p.y), lambda v: Point(*v))
    """
    if not USER_EXT_MIN <= code <= 127:
        raise ValueError(f"user extension codes are {USER_EXT_MIN}..127, not {code}")

    # The value is packed by a codec of its own (the outer packer is
    # mid-message); it shares the context, so fds and nesting depth carry over.
    def encode_ext(obj: Any, ctx: EncodeContext) -> bytes:
        return Codec().encode(encode(obj), ctx)

    def decode_ext(payload: bytes, ctx: DecodeContext) -> Any:
        return decode(Codec().decode(payload, ctx))

    default_registry.register(cls, code, encode_ext, decode_ext)


_SCALARS = frozenset((type(None), bool, int, float, str))


def _threshold(session: Any) -> int | None:
    """Bytes longer than this go out of band: the session's inline threshold
    (a runtime's lazy session answers without starting the transports), at
    least 64 KiB; None for a session that has none."""
    threshold = getattr(session, "inline_threshold", None)
    return max(threshold, _SCAN_FLOOR) if type(threshold) is int else None


def _int_range_message(value: Any) -> str:
    culprit = _find_big_int(value, 0)
    shown = ""
    if culprit is not None:
        text = str(culprit) if culprit.bit_length() <= 200 else f"of {culprit.bit_length()} bits"
        shown = f" {text}"
    return (
        f"cannot send the integer{shown}: integers must fit in 64 bits "
        "(-2**63 to 2**64 - 1); send a larger one as str(n) or as bytes"
    )


def _find_big_int(value: Any, depth: int) -> int | None:
    """The first int in ``value`` that msgpack cannot hold (natives only)."""
    if isinstance(value, int):
        return int(value) if not _INT_MIN <= value <= _INT_MAX else None
    if depth > 600:
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _find_big_int(k, depth + 1)
            if found is None:
                found = _find_big_int(v, depth + 1)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            found = _find_big_int(item, depth + 1)
            if found is not None:
                return found
    return None


class Codec:
    """Encodes values for the wire and decodes them under :class:`Limits`.

    A codec keeps one msgpack packer and is meant for one thread at a time (an
    endpoint's event loop thread); make one per thread otherwise.
    """

    def __init__(self, registry: ExtRegistry | None = None, limits: Limits | None = None) -> None:
        self.registry = registry if registry is not None else default_registry
        self.limits = limits or Limits()
        self._ectx = EncodeContext()
        self._dctx = DecodeContext()
        #: (object, ExtType) of each extension encoded by the current pass, and
        #: while a message is packed again, the same by id(object)
        self._memo: list[tuple[Any, Any]] = []
        self._replaying: dict[int, list[Any]] | None = None
        self._packer = self._new_packer()

    # -- encoding ---------------------------------------------------------------

    def encode(self, value: Any, ctx: EncodeContext | None = None) -> bytes:
        """Encode ``value``; raises TypeError naming any type that cannot travel."""
        self._ectx = ctx if ctx is not None else EncodeContext()
        try:
            data: bytes = self._packer.pack(value)
        except Exception as exc:
            return self._pack_failed(value, ctx, exc)
        # The hot path: a message under 64 KiB costs one length check here.
        if len(data) > _SCAN_FLOOR and ctx is not None and ctx.session is not None:
            data = self._bytes_out_of_band(value, data, ctx)
        if self._memo:
            self._memo.clear()
        return data

    def _pack_failed(self, value: Any, ctx: EncodeContext | None, exc: Exception) -> bytes:
        """Why packing ``value`` failed, as the TypeError the caller gets; or,
        where the culprit was bytes too large to pack inline, the message with
        them out of band."""
        self._packer = self._new_packer()  # a failed pack leaves partial output
        try:
            if isinstance(exc, TypeError):
                raise exc
            if isinstance(exc, OverflowError):  # msgpack: an int beyond 64 bits
                raise TypeError(_int_range_message(value)) from None
            if (
                isinstance(exc, (ValueError, BufferError))
                and ctx is not None
                and ctx.session is not None
                and self.registry.lookup(LargeBytes) is not None
            ):
                # bytes over 4 GiB, a non-contiguous memoryview: out of band they can go
                try:
                    swapped = self._swap_large_bytes(value, _threshold(ctx.session))
                except ValueError:  # a released memoryview: report the first error
                    swapped = value
                if swapped is not value:
                    return self._replay(swapped)
            if isinstance(exc, BufferError):  # msgpack packs only C-contiguous views
                raise TypeError(f"cannot send a memoryview: {exc}; send view.tobytes()") from None
            if isinstance(exc, ValueError):  # msgpack: recursion limit, sizes
                raise TypeError(f"cannot encode value: {exc}") from None
            raise exc
        finally:
            self._memo.clear()

    # -- large bytes out of band ------------------------------------------------

    def _bytes_out_of_band(self, value: Any, data: bytes, ctx: EncodeContext) -> bytes:
        """``data`` again with bytes over the session's threshold sent out of
        band, or ``data`` itself when it holds none."""
        if _BIN32 not in data:
            return data  # no bytes of 64 KiB or more anywhere, nested ones included
        threshold = _threshold(ctx.session)
        if threshold is None or len(data) <= threshold:
            return data
        if self.registry.lookup(LargeBytes) is None:
            return data
        try:
            swapped = self._swap_large_bytes(value, threshold)
            return data if swapped is value else self._replay(swapped)
        except BaseException:
            self._memo.clear()
            raise

    def _replay(self, value: Any) -> bytes:
        """Pack ``value`` again, reusing what the first pass's extension
        encoders produced: a tensor is exported once, an actor reference
        registered once."""
        memo: dict[int, list[Any]] = {}
        for obj, ext in self._memo:
            memo.setdefault(id(obj), []).append((obj, ext))
        self._replaying = memo
        try:
            self._packer = self._new_packer()
            return self._packer.pack(value)  # type: ignore[no-any-return]
        finally:
            self._replaying = None

    def _swap_large_bytes(self, value: Any, threshold: int | None) -> Any:
        """``value`` with every bytes-like over ``threshold`` wrapped in
        :class:`LargeBytes` (containers rebuilt as the codec would send them),
        or ``value`` itself when there is none. Registered types are left to
        their encoders; dict keys stay inline."""
        if threshold is None:
            return value
        cls = type(value)
        if cls is bytes or cls is bytearray:
            return LargeBytes(value) if len(value) > threshold else value
        if cls is list or cls is tuple or cls is set or cls is frozenset:
            return self._swap_items(value, cls, threshold)
        if cls is dict:
            return self._swap_dict(value, threshold)
        if cls is memoryview:
            return LargeBytes(value) if value.nbytes > threshold else value
        if cls in _SCALARS or self.registry.lookup(cls) is not None:
            return value
        # Subclasses of natives travel as the native (see _default).
        if isinstance(value, (bytes, bytearray)):
            return LargeBytes(bytes(value)) if len(value) > threshold else value
        if isinstance(value, dict):
            return self._swap_dict(value, threshold)
        if isinstance(value, list):
            return self._swap_items(value, list, threshold)
        if isinstance(value, tuple):
            return self._swap_items(value, tuple, threshold)
        return value

    def _swap_items(self, value: Any, cls: type, threshold: int) -> Any:
        native = type(value) is cls  # else a subclass: sent as ``cls``
        # A run of scalars (a long list of floats) is skipped at C speed.
        if native and _SCALARS.issuperset(map(type, value)):
            return value
        items = [self._swap_large_bytes(item, threshold) for item in value]
        if native and all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return cls(items)

    def _swap_dict(self, value: Any, threshold: int) -> Any:
        if type(value) is dict and _SCALARS.issuperset(map(type, value.values())):
            return value
        items = {k: self._swap_large_bytes(v, threshold) for k, v in value.items()}
        if type(value) is dict and all(items[k] is v for k, v in value.items()):
            return value
        return items

    def _new_packer(self) -> msgpack.Packer:
        return msgpack.Packer(default=self._default, strict_types=True, use_bin_type=True)

    def _pack_nested(self, items: list[Any]) -> bytes:
        # The main packer is mid-message: extension payloads need their own.
        return self._new_packer().pack(items)  # type: ignore[no-any-return]

    def _default(self, obj: Any) -> Any:
        cls = type(obj)
        if cls is tuple:
            return msgpack.ExtType(EXT_TUPLE, self._pack_nested(list(obj)))
        if cls is set or cls is frozenset:
            code = EXT_SET if cls is set else EXT_FROZENSET
            return msgpack.ExtType(code, self._pack_nested(list(obj)))
        entry = self.registry.lookup(cls)
        if entry is not None:
            if self._replaying is not None:
                done = self._replaying.get(id(obj))
                if done and done[0][0] is obj:
                    return done.pop(0)[1]
            ext = msgpack.ExtType(entry.code, entry.encode(obj, self._ectx))
            self._memo.append((obj, ext))
            return ext
        # Subclasses of natives travel as the native (IntEnum -> int, etc.).
        if isinstance(obj, bool):
            return bool(obj)
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return float(obj)
        if isinstance(obj, str):
            return str(obj)
        if isinstance(obj, bytes):
            return bytes(obj)
        if isinstance(obj, dict):
            return dict(obj)
        if isinstance(obj, list):
            return list(obj)
        if isinstance(obj, tuple):
            return msgpack.ExtType(EXT_TUPLE, self._pack_nested(list(obj)))
        if isinstance(obj, (bytearray, memoryview)):
            return bytes(obj)
        raise TypeError(
            f"cannot send an object of type {cls.__module__}.{cls.__qualname__}: "
            "pyisolate sends msgpack natives, tuples, sets, bytes, tensors, arrays, "
            "actor references and registered types (pyisolate.register_type)"
        )

    # -- decoding ---------------------------------------------------------------

    def decode(self, data: bytes | memoryview, ctx: DecodeContext | None = None) -> Any:
        """Decode one body; every malformed, oversized or unknown input is a
        ProtocolError."""
        if len(data) > self.limits.max_frame:
            raise ProtocolError(
                f"message body of {len(data)} bytes exceeds the limit of {self.limits.max_frame}"
            )
        self._dctx = ctx if ctx is not None else DecodeContext()
        try:
            return self._unpack(data)
        except ProtocolError:
            raise
        except RecursionError:
            raise ProtocolError("message nested too deeply") from None
        except Exception as exc:
            raise ProtocolError(f"undecodable message body: {type(exc).__name__}: {exc}") from None

    def _unpack(self, data: bytes | memoryview) -> Any:
        limits = self.limits
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            ext_hook=self._ext_hook,
            max_array_len=limits.max_items,
            max_map_len=limits.max_items,
            max_str_len=limits.max_frame,
            max_bin_len=limits.max_frame,
            max_ext_len=limits.max_frame,
        )

    def _ext_hook(self, code: int, payload: bytes) -> Any:
        ctx = self._dctx
        if ctx.depth >= self.limits.max_depth:
            raise ProtocolError("extension types nested too deeply")
        ctx.depth += 1
        try:
            if code in (EXT_TUPLE, EXT_SET, EXT_FROZENSET):
                items = self._unpack(payload)
                if type(items) is not list:
                    raise ProtocolError("malformed tuple/set extension")
                if code == EXT_TUPLE:
                    return tuple(items)
                return set(items) if code == EXT_SET else frozenset(items)
            decoder = self.registry.decoder(code)
            if decoder is None:
                raise ProtocolError(f"unknown extension type {code}")
            return decoder(payload, ctx)
        finally:
            ctx.depth -= 1
