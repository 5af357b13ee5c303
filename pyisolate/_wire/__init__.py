"""The wire: envelope layout and the msgpack value codec.

Everything that crosses a process boundary goes through this package, and
nothing here ever unpickles: values are msgpack natives plus a short list of
extension types (tuples, sets, actor references, out-of-band buffers, and types
users register). Decoding is bounded so that a hostile peer can only earn a
:class:`~pyisolate.errors.ProtocolError`, never exhaust the host.
"""

from ._codec import (
    Codec,
    DecodeContext,
    EncodeContext,
    ExtRegistry,
    Limits,
    default_registry,
    register_type,
)
from ._envelope import (
    HEADER_SIZE,
    HOST,
    PROTOCOL_VERSION,
    Header,
    Kind,
    decode_header,
    encode_batch,
    encode_header,
    split_batch,
)
from ._exceptions import exception_from_wire, exception_to_wire

__all__ = [
    "HEADER_SIZE",
    "HOST",
    "PROTOCOL_VERSION",
    "Codec",
    "DecodeContext",
    "EncodeContext",
    "ExtRegistry",
    "Header",
    "Kind",
    "Limits",
    "decode_header",
    "default_registry",
    "encode_batch",
    "encode_header",
    "exception_from_wire",
    "exception_to_wire",
    "register_type",
    "split_batch",
]
