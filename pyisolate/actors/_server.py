"""The actor's server: admits what the host sends, runs calls, sends results.

One :class:`ActorServer` per actor process, on its event loop thread. It
mirrors the host's router (the same admission table, ``_channel.RULES``):
each envelope kind the host may send or relay has a handler; calls and
streams run as tasks (``_tasks``); every call is answered, with an error
that says why when its result cannot be sent.
"""

from __future__ import annotations

import os
import socket
import sys
import traceback
from typing import TYPE_CHECKING, Any

import anyio

from .._wire import (
    HEADER_SIZE,
    HOST,
    PROTOCOL_VERSION,
    Codec,
    DecodeContext,
    EncodeContext,
    Kind,
    Limits,
    decode_header,
    encode_header,
    exception_to_wire,
    split_batch,
)
from ..errors import ProtocolError
from ..transport.lowlevel import LazySession
from ._actor import method_table
from ._calls import CallTable, on_asyncio
from ._channel import MAX_BATCH_ENTRIES, RULES, Context, Pump, actor_socket, check_size
from ._oob import decode_with_fds, encode_with_fds, receive_fds
from ._ref import ActorRef
from ._running import CallRunner
from ._target import explained, resolve_target
from ._tasks import AnyioTasks, AsyncioTasks

if TYPE_CHECKING:
    from ..transport.lowlevel import TransportSession

__all__ = ["ActorServer", "current_server"]

_DONE = object()
_BATCH = bytes([Kind.BATCH])
_current: ActorServer | None = None


def current_server() -> ActorServer:
    """The server of this actor process (for pyisolate's own use and tests)."""
    if _current is None:
        raise RuntimeError("not inside a pyisolate actor process")
    return _current


class ActorServer(CallRunner):
    """Serves one actor on the loop thread of the actor process."""

    def __init__(self, boot: dict[str, Any], channel: socket.socket | None = None) -> None:
        global _current
        _current = self
        self.boot = boot
        self.channel = channel
        if channel is not None:
            # Fds a header announces are already there: never wait long.
            channel.settimeout(10.0)
        self.actor_id: int = boot["actor_id"]
        self.name: str = boot["name"]
        # The host's limits: what it refuses, we refuse to send.
        self.codec = Codec(limits=Limits(max_frame=int(boot.get("max_frame", Limits.max_frame))))
        self._max_body = self.codec.limits.max_frame - HEADER_SIZE
        self.ctx: Context[Any] = Context(io_threads=1)
        _check_reachable(boot["endpoint"])
        self.sock = actor_socket(self.ctx, boot["endpoint"], self.codec.limits.max_frame)
        self.pump = Pump(self.sock, self._on_message, multipart=False)
        self.calls = CallTable(self._send)
        self.actor: Any = None
        self.methods: dict[str, str] = {}
        self._credits: dict[tuple[int, int], list[Any]] = {}
        self._sync_threads = max(1, int(boot.get("sync_threads", 1)))
        self.tasks: AsyncioTasks | AnyioTasks | None = None
        self._init_args: Any = None
        self._init_event: Any = None
        self._stop_event: Any = None
        self._stopping = False
        self.transport = LazySession(self._new_transport_session)
        # Capability tokens of the actors we hold references to, and which of
        # them the host already knows we hold (see _capabilities).
        self._tokens: dict[int, bytes] = {}
        self._introduced: set[int] = set()
        self._handlers = self._make_handlers()

    # -- endpoint protocol for ActorRefs held inside this actor ------------------

    def check_callable(self, actor_id: int, name: str) -> None:
        return None

    async def stop_actor(self, actor_id: int, timeout: float | None) -> None:
        raise RuntimeError("only the host that spawned an actor can stop it")

    def kill_actor(self, actor_id: int) -> None:
        raise RuntimeError("only the host that spawned an actor can kill it")

    def make_ref(
        self,
        actor_id: int,
        name: str,
        methods: dict[str, str] | None,
        token: bytes = b"",
        source: int = HOST,
    ) -> ActorRef:
        if token:
            self._tokens[actor_id] = token
            if source == HOST:
                self._introduced.add(actor_id)  # the host granted it as it sent it
        return ActorRef(self, actor_id, name, methods)

    def ref_token(self, actor_id: int, to_peer: int) -> bytes:
        return self._tokens.get(actor_id, b"")

    # -- sending ---------------------------------------------------------------

    def _send(self, kind: Kind, call_id: int, peer: int, body: Any) -> None:
        if peer != HOST and peer not in self._introduced and RULES[kind].opens:
            self._introduce(peer)
        if body is None:
            self.pump.send(encode_header(kind, call_id, peer))
            return
        ectx = EncodeContext(peer=peer, session=self.transport, endpoint=self)
        data = encode_with_fds(self.codec, body, self.channel, ectx, self._check_size)
        self.pump.send(encode_header(kind, call_id, peer, len(ectx.fds)) + data)

    def _check_size(self, nbytes: int) -> None:
        check_size(nbytes, self._max_body)

    def _introduce(self, peer: int) -> None:
        """Show the host the token of ``peer``'s reference, once, before the
        first call to it (the host relays messages unread, so it cannot see
        the references actors pass each other)."""
        token = self._tokens.get(peer)
        if token is not None:
            self.pump.send(encode_header(Kind.INTRODUCE) + self.codec.encode([peer, token]))
            self._introduced.add(peer)
        # No token: the host refuses the call with a PermissionError.

    def _send_error(self, peer: int, call_id: int, exc: BaseException) -> None:
        try:
            self._send(Kind.ERROR, call_id, peer, exception_to_wire(exc))
        except Exception as failure:
            # The error itself would not go (a huge message, odd arguments):
            # answer with its text alone, so the caller is not left waiting.
            traceback.print_exc()
            text = f"{type(exc).__name__}: {str(exc)[:4096]} (and it could not be sent: {failure})"
            self._send(Kind.ERROR, call_id, peer, ["builtins", "RuntimeError", [text], ""])

    def _send_result(self, kind: Kind, peer: int, call_id: int, value: Any) -> bool:
        """Send a result or stream item; if it cannot be encoded or sent (any
        exception: TypeError, a registered encoder's, the transport's, a size
        limit), answer the call with an error naming why. Every call gets an
        answer. False if the error was sent instead."""
        try:
            self._send(kind, call_id, peer, value)
        except Exception as exc:
            what = "result" if kind is Kind.REPLY else "stream item"
            error = type(exc) if isinstance(exc, (TypeError, ValueError)) else TypeError
            try:
                wrapped: BaseException = error(f"cannot send the {what}: {exc}")
            except Exception:
                wrapped = TypeError(f"cannot send the {what}: {type(exc).__name__}: {exc}")
            self._send_error(peer, call_id, wrapped)
            return False
        return True

    # -- serving ---------------------------------------------------------------

    async def serve(self) -> None:
        self._init_event = self.calls.new_event()
        self._stop_event = self.calls.new_event()
        async with anyio.create_task_group() as tg:
            if on_asyncio():
                self.tasks = AsyncioTasks(self._sync_threads)
            else:
                self.tasks = AnyioTasks(tg, self._sync_threads)
            tg.start_soon(self.pump.run)
            self._send(Kind.HELLO, 0, HOST, [PROTOCOL_VERSION, self.actor_id, self.boot["token"]])
            try:
                cls = resolve_target(self.boot)
                await self._init_event.wait()
                args, kwargs = self._init_args
                self.actor = cls(*args, **kwargs)
                try:
                    self.actor.name = self.name
                except Exception:
                    pass
                self.methods = method_table(cls)
                hook = getattr(self.actor, "on_start", None)
                if callable(hook):
                    result = hook()
                    if hasattr(result, "__await__"):
                        await result
            except Exception as exc:
                self._send(Kind.START_FAILED, 0, HOST, exception_to_wire(explained(exc)))
                self.pump.flush()
                self.pump.closed = True
                tg.cancel_scope.cancel()
                return
            self._send(Kind.READY, 0, HOST, self.methods)
            tg.start_soon(self._transport_ticker)
            await self._stop_event.wait()
            self.pump.flush()
            self.pump.closed = True
            tg.cancel_scope.cancel()

    def _new_transport_session(self) -> TransportSession:
        from ..transport.lowlevel import TransportSession  # the first tensor: not before

        # From this process's registry: what the actor's module registered
        # is received too (see pyisolate.transport.lowlevel).
        session = TransportSession(
            send_control=lambda peer, body: self._send(Kind.TRANSPORT, 0, peer, body)
        )
        session.peer_connected(HOST)
        return session

    async def _transport_ticker(self) -> None:
        while True:
            await anyio.sleep(0.5)
            if self.transport.started:
                self.transport.flush()

    async def _shutdown(self) -> None:
        self._stopping = True
        try:
            hook = getattr(self.actor, "on_stop", None)
            if callable(hook):
                result = hook()
                if hasattr(result, "__await__"):
                    await result
        except Exception:
            traceback.print_exc()
        assert self.tasks is not None
        self.tasks.cancel_all()
        self._stop_event.set()

    def close(self) -> None:
        try:
            self.sock.close(linger=2000)
            self.ctx.term()
        except Exception:
            pass

    # -- dispatch --------------------------------------------------------------

    def _on_message(self, frames: list[bytes]) -> int:
        frame = frames[0]
        if frame[:1] == _BATCH:
            try:
                envelopes = split_batch(frame, MAX_BATCH_ENTRIES)
            except ProtocolError as exc:
                print(f"pyisolate: dropped a malformed batch: {exc}", file=sys.stderr)
                return 1
            for envelope in envelopes:
                self._on_envelope(envelope)
            return len(envelopes)
        self._on_envelope(frame)
        return 1

    def _on_envelope(self, frame: bytes) -> None:
        try:
            header = decode_header(frame)
            rule = RULES.get(header.kind)
            if rule is None or not (rule.from_host or rule.forwardable):
                raise ProtocolError(f"{header.kind.name} is never sent to an actor")
        except ProtocolError as exc:
            print(f"pyisolate: dropped a malformed message: {exc}", file=sys.stderr)
            return
        body: Any = None
        try:
            fds = receive_fds(self.channel, header.nfds)
        except ProtocolError as exc:
            print(f"pyisolate: dropped a message: {exc}", file=sys.stderr)
            return
        if len(frame) > HEADER_SIZE:
            try:
                dctx = DecodeContext(peer=header.peer, session=self.transport, endpoint=self)
                body = decode_with_fds(self.codec, memoryview(frame)[HEADER_SIZE:], fds, dctx)
            except ProtocolError as exc:
                if header.kind in (Kind.CALL, Kind.STREAM):
                    self._send_error(header.peer, header.call_id, exc)
                print(f"pyisolate: dropped a malformed message: {exc}", file=sys.stderr)
                return
        try:
            self._handlers[header.kind](header.kind, header.call_id, header.peer, body)
        except ProtocolError as exc:
            print(f"pyisolate: dropped a message: {exc}", file=sys.stderr)
        if self.transport.started:
            self.transport.flush()  # a safe point: see the host's _route_one

    def _make_handlers(self) -> dict[Kind, Any]:
        """What this actor does with each kind it may receive (RULES' kinds
        the host sends or relays; a test checks that the two agree)."""
        answer = self._on_answer
        return {
            Kind.CALL: self._on_call,
            Kind.CAST: self._on_cast,
            Kind.STREAM: self._on_stream,
            Kind.REPLY: answer,
            Kind.ERROR: answer,
            Kind.ITEM: answer,
            Kind.END: answer,
            Kind.CREDIT: self._on_credit,
            Kind.CANCEL: self._on_cancel,
            Kind.PING: self._on_ping,
            Kind.SHUTDOWN: self._on_shutdown,
            Kind.TRANSPORT: self._on_transport,
            Kind.REFUSED: self._on_refused,
        }

    def _on_call(self, kind: Kind, call_id: int, peer: int, body: Any) -> None:
        assert self.tasks is not None
        if call_id == 0 and peer == HOST and self.actor is None:
            self._init_args = body
            self._init_event.set()
            return
        self.tasks.start((peer, call_id), self._run_call, peer, call_id, body)

    def _on_cast(self, kind: Kind, call_id: int, peer: int, body: Any) -> None:
        assert self.tasks is not None
        self.tasks.start(None, self._run_call, peer, None, body)

    def _on_stream(self, kind: Kind, call_id: int, peer: int, body: Any) -> None:
        assert self.tasks is not None
        self.tasks.start((peer, call_id), self._run_stream, peer, call_id, body)

    def _on_answer(self, kind: Kind, call_id: int, peer: int, body: Any) -> None:
        self.calls.dispatch(kind, call_id, body, peer)

    def _on_credit(self, kind: Kind, call_id: int, peer: int, body: Any) -> None:
        state = self._credits.get((peer, call_id))
        if state is not None and type(body) is int and body > 0:
            state[0] += body
            state[1].set()

    def _on_cancel(self, kind: Kind, call_id: int, peer: int, body: Any) -> None:
        assert self.tasks is not None
        self.tasks.cancel((peer, call_id))

    def _on_ping(self, kind: Kind, call_id: int, peer: int, body: Any) -> None:
        self._send(Kind.PONG, call_id, peer, None)

    def _on_shutdown(self, kind: Kind, call_id: int, peer: int, body: Any) -> None:
        assert self.tasks is not None
        if not self._stopping:
            self._stopping = True
            self.tasks.start(None, self._shutdown)

    def _on_transport(self, kind: Kind, call_id: int, peer: int, body: Any) -> None:
        if isinstance(body, dict) and body.get("op") == "peer_died" and peer == HOST:
            if self.transport.started:
                self.transport.peer_died(int(body.get("peer", -1)))
            return
        try:
            self.transport.handle_control(peer, body)
        except Exception as exc:
            print(f"pyisolate: bad transport message from {peer}: {exc}", file=sys.stderr)

    def _on_refused(self, kind: Kind, call_id: int, peer: int, body: Any) -> None:
        print(f"pyisolate: the host refused this actor: {body}", file=sys.stderr)
        os._exit(71)


def _check_reachable(endpoint: str) -> None:
    """Fail fast, with the reason, if the host's socket cannot be reached: zmq
    would otherwise wait silently and the host would only see a timeout."""
    if not endpoint.startswith("ipc://"):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(endpoint[len("ipc://") :])
    except OSError as exc:
        raise SystemExit(f"pyisolate: cannot reach the host at {endpoint}: {exc}") from None
    finally:
        probe.close()
