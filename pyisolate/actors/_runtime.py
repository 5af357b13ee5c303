"""The host side: a Runtime owns a ROUTER socket, a private directory and actors.

Every actor connects one DEALER to the runtime's ROUTER and proves who it is
with a HELLO carrying the protocol version and its secret token. The runtime
routes: messages for the host are handled here, messages between actors are
forwarded with the source stamped by the host (an actor cannot pose as
another) and without decoding their bodies.

Failures stay local. A malformed or oversized message, a bad token or a
disconnect cuts off that one actor with ProtocolError; everyone else is served
on. An actor's exit is seen at once (``_process``) and every call waiting on
it, from the host or from other actors, fails with ActorDiedError.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import secrets
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import attrs
import msgpack
import zmq

from .._wire import (
    HEADER_SIZE,
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
from .._wire._envelope import HOST
from ..errors import (
    ActorClosedError,
    ActorDiedError,
    ActorError,
    ActorStartError,
    ProtocolError,
    TransportError,
)
from ..sandbox import SandboxMode, SandboxPolicy, build_launch
from ._calls import CallTable
from ._oob import LazySession, decode_with_fds, encode_with_fds, forward_fds, receive_fds
from ._options import SpawnOptions, default_compute_threads
from ._peercred import enable_credentials, read_credentials
from ._process import ActorProcess, describe_exit, python_command
from ._ref import ActorRef
from ._rundir import RuntimeDir, base_dir, sweep_stale

__all__ = ["Runtime"]

log = logging.getLogger("pyisolate.runtime")

_PKG_ROOT = str(Path(__file__).resolve().parents[2])
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
_FORWARDABLE = frozenset(
    {
        Kind.CALL,
        Kind.CAST,
        Kind.STREAM,
        Kind.REPLY,
        Kind.ERROR,
        Kind.ITEM,
        Kind.END,
        Kind.CREDIT,
        Kind.CANCEL,
        Kind.TRANSPORT,
    }
)
_FINAL = frozenset({Kind.REPLY, Kind.ERROR, Kind.END})
_DISCONNECT_GRACE = 1.0
_KILL_GRACE = 2.0
_SHARED_SWITCHES = ("PYISOLATE_ENABLE_CUDA_IPC", "PYISOLATE_TRANSPORT")
_TRANSPORT_TICK = 0.5
_BATCH = bytes([Kind.BATCH])


@attrs.define(eq=False)
class _Record:
    """The host's view of one actor."""

    id: int
    name: str
    token: bytes
    options: SpawnOptions
    init_body: bytes
    init_nfds: int = 0
    process: ActorProcess | None = None
    routing: bytes | None = None
    state: str = "starting"  # starting -> running -> stopping -> stopped | dead
    ready: anyio.Event = attrs.Factory(anyio.Event)
    start_error: BaseException | None = None
    ref: ActorRef | None = None
    death: BaseException | None = None
    # (caller id, call id) of forwarded calls this actor has not answered yet.
    inbound: set[tuple[int, int]] = attrs.Factory(set)
    # The host's end of the actor's side channel (credentials, tensor fds).
    channel: socket.socket | None = None
    isolation: str = "none"
    disconnected: bool = False

    def closed_error(self) -> BaseException:
        if self.state in ("stopping", "stopped"):
            return ActorClosedError(f"actor {self.name!r} has stopped", actor=self.name)
        if self.death is not None:
            return _copy_error(self.death)
        return ActorClosedError(f"actor {self.name!r} is not running", actor=self.name)


def _copy_error(exc: BaseException) -> BaseException:
    if isinstance(exc, ActorDiedError):
        return ActorDiedError(str(exc), actor=exc.actor, exitcode=exc.exitcode)
    return type(exc)(*exc.args)


class Runtime:
    """Spawns and owns actors; use as ``async with Runtime() as rt``.

    Leaving the block stops every actor (gracefully, then by force after its
    ``stop_timeout``) and removes every file the runtime made. For synchronous
    code use :meth:`blocking`.
    """

    def __init__(
        self,
        *,
        options: SpawnOptions | None = None,
        sandbox: SandboxArg = SandboxMode.AUTO,
        limits: Limits | None = None,
    ) -> None:
        self.options = options or SpawnOptions()
        self.sandbox = _sandbox_setting(sandbox)
        self._codec = Codec(limits=limits)
        self._ids = itertools.count(1)
        self._records: dict[int, _Record] = {}
        self._by_routing: dict[bytes, _Record] = {}
        self.calls = CallTable(self._send_to)
        self.transport: Any = None
        self._open = False
        self._closed = False
        # Running supervisors (see _supervisor): stopped before the actors.
        self._supervisors: list[Any] = []
        # Actor-to-actor calls held for supervised actors between incarnations
        # (actor id -> _suphold.HeldCalls), registered by their supervisors.
        self._holds: dict[int, Any] = {}

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        if self._open or self._closed:
            raise RuntimeError("a Runtime can be entered only once")
        sweep_stale()
        self._dir = RuntimeDir()
        self._zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context(io_threads=1)
        router = self._zctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.SNDHWM, 0)
        router.setsockopt(zmq.RCVHWM, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # zmq drops a peer whose message exceeds this, before we buffer it.
        router.setsockopt(zmq.MAXMSGSIZE, self._codec.limits.max_frame + 1024)
        self.socket_path = str(self._dir.path / "router.sock")
        if len(self.socket_path.encode()) > 107:
            router.close(linger=0)
            self._zctx.term()
            self._dir.close()
            raise RuntimeError(
                f"the runtime socket path {self.socket_path!r} is longer than the 107 bytes "
                "a Unix socket address allows: set PYISOLATE_RUNTIME_DIR to a shorter directory"
            )
        router.bind(f"ipc://{self.socket_path}")
        # The directory (0700) keeps others out; the socket itself is opened up
        # so that a sandboxed actor running under another uid can connect.
        os.chmod(self.socket_path, 0o666)
        self.endpoint = f"ipc://{self.socket_path}"
        self._router = router
        from ._pump import Pump

        self._pump = Pump(router, self._on_message, on_send_error=self._on_send_error)
        # Disconnects (a crash, or zmq dropping an oversized message) arrive on
        # a monitor socket without the peer's identity: probe who is gone.
        self._monitor = router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._monitor_pump = Pump(self._monitor, self._on_monitor_event)
        self.transport = LazySession(self._new_transport_session)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._pump.run)
        self._tg.start_soon(self._transport_ticker)
        self._tg.start_soon(self._monitor_pump.run)
        self._open = True
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self._stop_all()
        finally:
            self._open = False
            self._closed = True
            self._pump.closed = True
            self._monitor_pump.closed = True
            self._tg.cancel_scope.cancel()
            try:
                # Our tasks end by cancellation; the body's own exception (if
                # any) propagates unwrapped from the caller's ``async with``.
                await self._tg.__aexit__(None, None, None)
            finally:
                if self.transport.started:
                    self.transport.close()
                for record in self._records.values():
                    self._close_channel(record)
                self._router.disable_monitor()
                self._monitor.close(linger=0)
                self._router.close(linger=0)
                self._zctx.term()
                self._dir.close()

    async def _stop_all(self) -> None:
        # Supervisors first: they would restart the children stopped below.
        for supervisor in reversed(self._supervisors):
            await supervisor.stop()
        records = [r for r in self._records.values() if r.state in ("starting", "running")]
        async with anyio.create_task_group() as tg:
            for record in reversed(records):
                tg.start_soon(self.stop_actor, record.id, None)
        self.calls.fail_peer_all(lambda: ActorClosedError("the runtime was closed"))

    @property
    def directory(self) -> Path:
        """The runtime's private directory (mode 0700), removed on exit."""
        return self._dir.path

    @classmethod
    def blocking(cls, **kwargs: Any) -> Any:
        """The same API for synchronous code: ``with Runtime.blocking() as rt:``."""
        from ._blocking import BlockingRuntime

        return BlockingRuntime(**kwargs)

    # -- spawning ----------------------------------------------------------------

    async def spawn(
        self,
        target: type | str,
        *args: Any,
        name: str | None = None,
        sandbox: SandboxArg | None = None,
        options: SpawnOptions | None = None,
        _reuse_id: int | None = None,
        _template: Any = False,
        **kwargs: Any,
    ) -> ActorRef:
        """Start an actor process running ``target(*args, **kwargs)``; return its
        reference once the constructor and ``on_start`` have run.

        ``target`` is a class (defined at module level, the main script included)
        or a ``"module:Class"`` string. Start-up failures raise ActorStartError
        with the child's traceback.

        ``sandbox``: a :class:`SandboxMode`, a :class:`SandboxPolicy` (run under
        AUTO), or a ``(mode, policy)`` pair; default: the runtime's.
        ``options``: a :class:`SpawnOptions`; every other keyword goes to the
        actor's constructor.
        """
        if not self._open:
            raise RuntimeError("the Runtime is not running: use 'async with Runtime() as rt'")
        opts = options or self.options
        spec, main_path = _target_spec(target)
        # A supervisor restarts a child under its old id: references follow it.
        actor_id = next(self._ids) if _reuse_id is None else _reuse_id
        name = name or f"{spec.rpartition(':')[2].rpartition('.')[2].lower()}-{actor_id}"
        if any(
            r.name == name and r.state in ("starting", "running") for r in self._records.values()
        ):
            raise ValueError(f"an actor named {name!r} is already running")
        mode, policy = _sandbox_setting(sandbox) if sandbox is not None else self.sandbox
        # A template without a scope is shared by every actor of these settings.
        shared_template = (_template is True) or (opts.template and _template is False)
        policy = _own_uid(policy, actor_id, shared=shared_template)
        host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # Encode the constructor arguments first: an argument that cannot be
        # sent raises TypeError here, before a process is started. Their
        # tensors' fds wait in the side channel until the actor reads them.
        ectx = EncodeContext(peer=actor_id, session=self.transport, endpoint=self)
        try:
            init_body = encode_with_fds(self._codec, [list(args), kwargs], host_end, ectx)
        except BaseException:
            host_end.close()
            child_end.close()
            raise
        record = _Record(actor_id, name, secrets.token_bytes(16), opts, init_body)
        record.init_nfds = len(ectx.fds)
        self._records[actor_id] = record
        host_end.setblocking(False)
        enable_credentials(host_end)
        record.channel = host_end
        sys_path = [
            os.path.abspath(p) if p else os.getcwd() for p in sys.path if isinstance(p, str)
        ]
        if opts.python:
            # Another interpreter (a virtual environment) keeps its own
            # packages; it only gets our code directories in front of them.
            sys_path = [p for p in sys_path if not _is_installation_path(p)]
        boot = {
            "endpoint": self.endpoint,
            "actor_id": actor_id,
            "token": record.token,
            "name": name,
            "target": spec,
            "main_path": main_path,
            "sys_path": sys_path,
            "sys_path_mode": "prepend" if opts.python else "replace",
            "channel_fd": child_end.fileno(),
            "log_level": logging.getLogger(f"pyisolate.actor.{name}").getEffectiveLevel(),
            "sync_threads": opts.sync_threads,
            "backend": opts.backend,
            "cwd": opts.cwd or os.getcwd(),
        }
        argv = python_command(opts.python, _PKG_ROOT if opts.python is None else None)
        ro_binds = [p for p in sys_path if not _too_broad(p)] + [_PKG_ROOT]
        if main_path:
            # The script's directory holds the modules it imports; but a script
            # in a temp or home directory gets itself alone: binding those would
            # show the sandbox every file beside it.
            main_dir = os.path.dirname(main_path)
            ro_binds.append(main_path if _too_broad(main_dir) else main_dir)
        if opts.python:
            ro_binds.append(os.path.dirname(os.path.dirname(os.path.abspath(opts.python))))
        if _template is not False or opts.template:
            # Fork from a warm template (see _template); None: it went cold.
            # A non-boolean ``_template`` scopes the template to one owner.
            from ._template import spawn_forked

            scope = None if isinstance(_template, bool) else _template
            forked = await spawn_forked(
                self, record, boot, mode, policy, opts, ro_binds, child_end, _PKG_ROOT, scope=scope
            )
            if forked is not None:
                return forked  # type: ignore[no-any-return]
        try:
            plan = build_launch(
                policy,
                mode,
                argv,
                env=self._child_env(opts),
                ro_binds=ro_binds,
                rw_binds=[],
                socket_paths=[self.socket_path],
                pass_fds=[child_end.fileno()],
            )
        except BaseException:
            record.state = "dead"
            child_end.close()
            self._close_channel(record)
            raise
        record.isolation = plan.isolation
        try:
            record.process = ActorProcess(
                plan.argv,
                env=plan.env,
                bootstrap=boot,
                pass_fds=plan.pass_fds,
                logger=logging.getLogger(f"pyisolate.actor.{name}"),
                cwd=opts.cwd,
                returncode_map=plan.actor_returncode,
            )
        except OSError as exc:
            record.state = "dead"
            self._close_channel(record)
            raise ActorStartError(f"could not start actor {name!r}: {exc}", actor=name) from exc
        finally:
            plan.close()
            child_end.close()
        self._tg.start_soon(self._watch, record)
        self._tg.start_soon(record.process.pump_output, "stdout")
        self._tg.start_soon(record.process.pump_output, "stderr")
        try:
            with anyio.fail_after(opts.start_timeout):
                await record.ready.wait()
        except TimeoutError:
            record.process.kill()
            raise ActorStartError(
                f"actor {name!r} did not start within {opts.start_timeout} s", actor=name
            ) from None
        except BaseException:
            record.process.kill()
            raise
        if record.start_error is not None:
            record.process.kill()
            raise record.start_error
        assert record.ref is not None
        return record.ref

    def _child_env(self, opts: SpawnOptions) -> dict[str, str]:
        """The variables pyisolate sets for an actor; the sandbox adds the host
        variables its policy allows (all of them when unsandboxed)."""
        env = {"PYTHONUNBUFFERED": "1"}
        threads = str(opts.compute_threads or default_compute_threads())
        for var in _THREAD_VARS:
            env[var] = threads
        # pyisolate's own switches (PYISOLATE_ENABLE_CUDA_IPC, PYISOLATE_TRANSPORT)
        # must mean the same on both sides of a transfer; the sandbox also
        # turns GPU passthrough on when CUDA IPC is enabled.
        for var in _SHARED_SWITCHES:
            if var in os.environ:
                env[var] = os.environ[var]
        env.update(opts.env)
        return env

    async def _watch(self, record: _Record) -> None:
        assert record.process is not None
        await record.process.watch()
        self._on_exit(record, record.process.returncode)

    def _on_exit(self, record: _Record, code: int | None) -> None:
        was = record.state
        if was == "starting" and record.start_error is None:
            tail = "\n".join(record.process.stderr_tail) if record.process else ""
            record.start_error = ActorStartError(
                f"actor {record.name!r} {describe_exit(code)} before it was ready"
                + (f"; its stderr ended with:\n{tail}" if tail else ""),
                actor=record.name,
            )
        if was in ("stopping", "stopped") or (was == "running" and code == 0):
            # Exit status 0 from a running actor is the actor ending itself
            # (exit_actor()): a normal stop, not a death.
            record.state = "stopped"
        else:
            record.state = "dead"
            if record.death is None:
                record.death = ActorDiedError(
                    f"actor {record.name!r} died ({describe_exit(code)})",
                    actor=record.name,
                    exitcode=code,
                )
            if was == "running":
                log.info("%s", record.death)
        record.ready.set()
        if record.routing is not None:
            self._by_routing.pop(record.routing, None)
            record.routing = None
        self._close_channel(record)
        self.calls.fail_peer(record.id, record.closed_error)
        # Calls that other actors made on this one, and calls this one made on
        # others: answer the first with the death, cancel the second.
        for caller, call_id in record.inbound:
            self._send_error_to(caller, call_id, record.id, record.closed_error())
        record.inbound.clear()
        for other in self._records.values():
            for caller, call_id in [k for k in other.inbound if k[0] == record.id]:
                other.inbound.discard((caller, call_id))
                self._raw_send(other, Kind.CANCEL, call_id, record.id)
        if self.transport.started:
            self.transport.peer_died(record.id)
        # Actors that exchanged tensors with it release what they hold for it.
        for other in self._records.values():
            if other.state == "running" and other.routing is not None:
                try:
                    self._send_to(
                        Kind.TRANSPORT, 0, other.id, {"op": "peer_died", "peer": record.id}
                    )
                except ActorError:
                    pass

    # -- transport ---------------------------------------------------------------

    def _new_transport_session(self) -> Any:
        from ..transport import TransportSession

        return TransportSession(
            send_control=self._send_transport_control, workdir=str(self._dir.path)
        )

    def _send_transport_control(self, peer: int, body: Any) -> None:
        try:
            self._send_to(Kind.TRANSPORT, 0, peer, body)
        except ActorError:
            pass  # the peer is gone; peer_died releases what it held

    async def _transport_ticker(self) -> None:
        # Releases queued by garbage collection (CUDA IPC) leave from here.
        while True:
            await anyio.sleep(_TRANSPORT_TICK)
            if self.transport.started:
                self.transport.flush()

    # -- endpoint protocol (used by ActorRef) -------------------------------------

    def check_callable(self, actor_id: int, name: str) -> None:
        record = self._records.get(actor_id)
        if record is None:
            raise ActorClosedError(f"no actor {name!r} in this runtime", actor=name)
        if record.state != "running":
            raise record.closed_error()

    def make_ref(self, actor_id: int, name: str, methods: dict[str, str] | None) -> ActorRef:
        record = self._records.get(actor_id)
        if record is not None and record.ref is not None:
            return record.ref
        return ActorRef(self, actor_id, name, methods)

    async def stop_actor(self, actor_id: int, timeout: float | None) -> None:
        record = self._records.get(actor_id)
        if record is None or record.process is None:
            return
        if record.state in ("running", "starting"):
            starting = record.state == "starting"
            record.state = "stopping"
            if starting or record.routing is None:
                record.process.kill()
            else:
                try:
                    self._raw_send(record, Kind.SHUTDOWN, 0, HOST)
                except ActorDiedError:
                    record.process.kill()
        grace = timeout if timeout is not None else record.options.stop_timeout
        with anyio.move_on_after(grace):
            await record.process.exited.wait()
        if not record.process.exited.is_set():
            log.warning("actor %r did not stop within %s s: killing it", record.name, grace)
            record.process.kill()
            with anyio.move_on_after(_KILL_GRACE):
                await record.process.exited.wait()
            if not record.process.exited.is_set():
                record.process.kill_launcher()
                await record.process.exited.wait()

    async def supervise(self, spec: Any) -> Any:
        """Start a supervision tree from a :class:`Supervisor` spec; return its
        handle once every child runs (see ``pyisolate.actors._supervisor``)."""
        if not self._open:
            raise RuntimeError("the Runtime is not running: use 'async with Runtime() as rt'")
        from ._supervisor import start_supervisor

        return await start_supervisor(self, spec)

    def kill_actor(self, actor_id: int) -> None:
        record = self._records.get(actor_id)
        if record is not None and record.process is not None:
            record.process.kill()

    async def ping(self, ref: ActorRef, timeout: float | None = None) -> float:
        """Round-trip a heartbeat through the actor's event loop; return seconds."""
        self.check_callable(ref.id, ref.name)
        start = anyio.current_time()
        await self.calls.ping(ref.id, ref.name, timeout)
        return anyio.current_time() - start

    def actors(self) -> list[ActorRef]:
        """References to the running actors, in start order."""
        return [r.ref for r in self._records.values() if r.state == "running" and r.ref]

    def process_id(self, ref: ActorRef) -> int | None:
        """The OS process id of the actor behind ``ref``, as this host sees it
        (the actor's own, not its sandbox launcher's); None once it has exited."""
        record = self._records.get(ref.id)
        if record is None or record.process is None or record.process.returncode is not None:
            return None
        return record.process.actor_pid or record.process.pid

    def isolation(self, ref: ActorRef) -> str:
        """How the actor behind ``ref`` is sandboxed: "full", "degraded" or "none"."""
        record = self._records.get(ref.id)
        return record.isolation if record is not None else "none"

    def _close_channel(self, record: _Record) -> None:
        if record.channel is not None:
            record.channel.close()
            record.channel = None

    # -- sending -----------------------------------------------------------------

    def _send_to(self, kind: Kind, call_id: int, peer: int, body: Any) -> None:
        record = self._records.get(peer)
        if record is None or record.routing is None or record.state not in ("running", "stopping"):
            if record is None:
                raise ActorClosedError(f"no actor with id {peer}")
            raise record.closed_error()
        if body is None:
            self._raw_send(record, kind, call_id, HOST)
            return
        ectx = EncodeContext(peer=peer, session=self.transport, endpoint=self)
        try:
            data = encode_with_fds(self._codec, body, record.channel, ectx)
        except TransportError as exc:
            if not isinstance(exc.__context__, (BrokenPipeError, ConnectionResetError)):
                raise
            # The actor died a moment ago (its side channel is closed) and its
            # exit is not seen yet: the same error as an unreachable socket.
            self._on_disconnect(record)
            raise ActorDiedError(
                f"actor {record.name!r} is unreachable: {exc}", actor=record.name
            ) from None
        self._emit(record, encode_header(kind, call_id, HOST, len(ectx.fds)) + data)

    def _raw_send(
        self, record: _Record, kind: Kind, call_id: int, peer: int, body: bytes | None = None
    ) -> None:
        if record.routing is None:
            return
        header = encode_header(kind, call_id, peer)
        self._emit(record, header + body if body is not None else header)

    def _emit(self, record: _Record, payload: bytes) -> None:
        try:
            self._pump.send(payload, record.routing)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the peer's connection is gone
            self._on_disconnect(record)
            raise ActorDiedError(
                f"actor {record.name!r} is unreachable: {exc}", actor=record.name
            ) from None

    def _send_error_to(self, peer: int, call_id: int, source: int, exc: BaseException) -> None:
        record = self._records.get(peer)
        if record is None or record.routing is None:
            return
        body = msgpack.packb(exception_to_wire(exc, with_traceback=False))
        try:
            self._raw_send(record, Kind.ERROR, call_id, source, body)
        except ActorDiedError:
            pass

    # -- receiving ---------------------------------------------------------------

    def _on_message(self, frames: list[bytes]) -> None:
        try:
            self._route(frames)
        except Exception:  # a bug here must not take the whole runtime down
            log.exception("pyisolate: internal error while routing a message")

    def _on_monitor_event(self, frames: list[bytes]) -> None:
        self._probe_connections()
        # The event can arrive before the ROUTER has dropped the peer's pipe,
        # when a probe still succeeds: look again a little later.
        self._tg.start_soon(self._reprobe)

    async def _reprobe(self) -> None:
        for delay in (0.02, 0.1, 0.5):
            await anyio.sleep(delay)
            self._probe_connections()

    def _probe_connections(self) -> None:
        for record in list(self._by_routing.values()):
            if record.state != "running":
                continue
            try:
                self._raw_send(record, Kind.PING, 0, HOST)
            except ActorDiedError:
                self._on_disconnect(record)

    def _on_send_error(self, routing: bytes | None, error: zmq.ZMQError) -> None:
        record = self._by_routing.get(routing) if routing is not None else None
        if record is not None:
            self._on_disconnect(record)

    def _route(self, frames: list[bytes]) -> None:
        routing = frames[0]
        record = self._by_routing.get(routing)
        if record is None:
            self._handshake(routing, frames)
            return
        try:
            if len(frames) != 2:
                raise ProtocolError(f"message of {len(frames) - 1} frames")
            frame = frames[1]
            if frame[:1] == _BATCH:
                for envelope in split_batch(frame):
                    self._route_one(record, envelope)
                    if record.state == "dead":
                        return
                return
        except ProtocolError as exc:
            self._cut_off(record, exc)
            return
        self._route_one(record, frame)

    def _route_one(self, record: _Record, frame: bytes) -> None:
        try:
            header = decode_header(frame)
            fds = receive_fds(record.channel, header.nfds)
            if header.peer != HOST:
                self._forward(record, header.kind, header.call_id, header.peer, frame, fds)
                return
            body = None
            if len(frame) > HEADER_SIZE:
                dctx = DecodeContext(peer=record.id, session=self.transport, endpoint=self)
                body = decode_with_fds(self._codec, memoryview(frame)[HEADER_SIZE:], fds, dctx)
            elif fds:
                forward_fds(fds, None)  # closes them: fds without a body to use them
                raise ProtocolError("file descriptors sent without a body")
            self._handle(record, header.kind, header.call_id, body)
        except ProtocolError as exc:
            self._cut_off(record, exc)
        if self.transport.started:
            # A safe point (no encode in progress): let segment releases queued
            # by garbage collection leave now rather than on the next tick.
            self.transport.flush()

    def _handshake(self, routing: bytes, frames: list[bytes]) -> None:
        try:
            if len(frames) != 2 or len(frames[1]) > 512:
                raise ProtocolError("expected a HELLO")
            header = decode_header(frames[1])
            if header.kind is not Kind.HELLO:
                raise ProtocolError(f"expected HELLO, got {header.kind.name}")
            version, actor_id, token = msgpack.unpackb(
                frames[1][HEADER_SIZE:],
                max_bin_len=256,
                max_str_len=256,
                max_array_len=3,
                max_map_len=0,
            )
            if type(actor_id) is not int or not isinstance(token, bytes):
                raise ProtocolError("malformed HELLO")
        except Exception as exc:
            self._refuse(routing, f"handshake refused: {exc}")
            return
        record = self._records.get(actor_id)
        if (
            record is None
            or record.state != "starting"
            or record.routing is not None
            or not hmac.compare_digest(token, record.token)
        ):
            self._refuse(routing, "handshake refused: unknown actor or wrong token")
            return
        if version != PROTOCOL_VERSION:
            self._refuse(routing, f"protocol version {version!r} is not {PROTOCOL_VERSION}")
            record.start_error = ActorStartError(
                f"actor {record.name!r} speaks protocol version {version!r}; this host speaks "
                f"{PROTOCOL_VERSION}",
                actor=record.name,
            )
            record.start_error.__cause__ = ProtocolError("protocol version mismatch")
            record.ready.set()
            if record.process is not None:
                record.process.kill()
            return
        record.routing = routing
        self._by_routing[routing] = record
        if record.channel is not None and record.process is not None:
            # Sent before the HELLO, so it is waiting on the side channel now.
            record.process.actor_pid = read_credentials(record.channel)
        self._emit(record, encode_header(Kind.CALL, 0, HOST, record.init_nfds) + record.init_body)

    def _refuse(self, routing: bytes, reason: str) -> None:
        log.warning("pyisolate: refused a connection: %s", reason)
        try:
            self._pump.send(encode_header(Kind.REFUSED) + msgpack.packb(reason), routing)
        except zmq.ZMQError:
            pass

    def _handle(self, record: _Record, kind: Kind, call_id: int, body: Any) -> None:
        if kind in (Kind.REPLY, Kind.ERROR, Kind.ITEM, Kind.END, Kind.PONG):
            self.calls.dispatch(kind, call_id, body, actor=record.name)
        elif kind is Kind.READY and record.state == "starting":
            if not isinstance(body, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in body.items()
            ):
                raise ProtocolError("malformed READY")
            record.ref = ActorRef(
                self, record.id, record.name, body, default_timeout=record.options.call_timeout
            )
            record.state = "running"
            record.ready.set()
            if self.transport.started:
                self.transport.peer_connected(record.id)
            held = self._holds.get(record.id)
            if held is not None:
                held.deliver()  # calls made while it restarted, in order
        elif kind is Kind.START_FAILED and record.state == "starting":
            record.start_error = _start_error(record.name, body)
            record.ready.set()
        elif kind in (Kind.CALL, Kind.STREAM):
            self._send_error_to(
                record.id, call_id, HOST, AttributeError("the host serves no methods")
            )
        elif kind is Kind.TRANSPORT and self.transport is not None:
            self.transport.handle_control(record.id, body)
        elif kind in (Kind.CAST, Kind.CREDIT, Kind.CANCEL):
            pass
        else:
            raise ProtocolError(f"unexpected {kind.name} from actor {record.name!r}")

    def _forward(
        self, src: _Record, kind: Kind, call_id: int, peer: int, frame: bytes, fds: list[int]
    ) -> None:
        if kind not in _FORWARDABLE:
            forward_fds(fds, None)
            raise ProtocolError(f"{kind.name} cannot be sent to another actor")
        dst = self._records.get(peer)
        held = self._holds.get(peer)
        if (
            held is not None
            and (dst is None or dst.routing is None or dst.state != "running")
            and held.offer(src, kind, call_id, frame, fds)
        ):
            return  # a supervised actor between incarnations (see _suphold)
        running = dst is not None and dst.routing is not None and dst.state == "running"
        if fds:
            # Only to a running actor: fds left in a channel nobody reads
            # would be taken for the next message's.
            try:
                forward_fds(fds, dst.channel if running and dst is not None else None)
            except TransportError:
                running = False  # its channel is gone with it
        if dst is None or not running:
            if kind in (Kind.CALL, Kind.STREAM):
                error = (
                    dst.closed_error()
                    if dst is not None
                    else ActorClosedError(f"no actor with id {peer}")
                )
                self._send_error_to(src.id, call_id, peer, error)
            return
        if kind in (Kind.CALL, Kind.STREAM):
            dst.inbound.add((src.id, call_id))
        elif kind in _FINAL:
            src.inbound.discard((dst.id, call_id))
        # Re-stamp the header with the true source; the body travels unread.
        restamped = encode_header(kind, call_id, src.id, len(fds)) + frame[HEADER_SIZE:]
        try:
            self._emit(dst, restamped)
        except ActorDiedError as exc:
            if kind in (Kind.CALL, Kind.STREAM):
                dst.inbound.discard((src.id, call_id))
                self._send_error_to(src.id, call_id, peer, exc)

    def _on_disconnect(self, record: _Record) -> None:
        if record.state not in ("running", "starting") or record.disconnected:
            return
        record.disconnected = True

        async def judge() -> None:
            # A crash closes the connection too; give the exit a moment to be
            # seen before calling it a protocol violation.
            assert record.process is not None
            with anyio.move_on_after(_DISCONNECT_GRACE):
                await record.process.exited.wait()
            if not record.process.exited.is_set():
                self._cut_off(
                    record,
                    ProtocolError(
                        f"actor {record.name!r} dropped its connection (a message over the "
                        f"{self._codec.limits.max_frame}-byte limit, or a closed socket)"
                    ),
                )

        self._tg.start_soon(judge)

    def _cut_off(self, record: _Record, exc: ProtocolError) -> None:
        """Disconnect a misbehaving actor: fail its calls with ``exc``, kill it."""
        if record.state in ("dead", "stopped"):
            return
        log.error("pyisolate: actor %r violated the protocol and is cut off: %s", record.name, exc)
        record.death = ProtocolError(f"actor {record.name!r} was cut off: {exc}")
        if record.state == "starting":
            record.start_error = ActorStartError(str(record.death), actor=record.name)
            record.start_error.__cause__ = exc
            record.ready.set()
        record.state = "dead"
        if record.routing is not None:
            self._by_routing.pop(record.routing, None)
            record.routing = None
        self.calls.fail_peer(record.id, record.closed_error)
        if record.process is not None:
            record.process.kill()


SandboxArg = SandboxMode | SandboxPolicy | tuple[SandboxMode, SandboxPolicy]


def _is_installation_path(path: str) -> bool:
    """True for the host interpreter's own directories (stdlib, site-packages)."""
    import site

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}
    user_site = site.getusersitepackages()
    if isinstance(user_site, str):
        roots.add(user_site)
    path = os.path.abspath(path)
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots if r)


# Uids for actors when the host is root: one per actor, so that actors cannot
# signal or trace each other and a process limit is per actor, not shared.
# Far above the ranges distributions hand to users and containers.
_ACTOR_UID_BASE = 1_700_000_000
_ACTOR_UID_SPAN = 100_000_000


def _own_uid(policy: SandboxPolicy, actor_id: int, *, shared: bool) -> SandboxPolicy:
    """The policy with an actor's own uid and gid, where the host is root and
    the policy kept the default. Actors forked from one shared template keep
    the shared default: they share its sandbox anyway."""
    default = SandboxPolicy()
    if shared or os.geteuid() != 0 or (policy.uid, policy.gid) != (default.uid, default.gid):
        return policy
    uid = _ACTOR_UID_BASE + actor_id % _ACTOR_UID_SPAN
    return attrs.evolve(policy, uid=uid, gid=uid)


def _too_broad(path: str) -> bool:
    """True for directories never bound whole: the runtime base or above it,
    the temp directories, home directories, or anything above them."""
    if _covers_runtime_base(path):
        return True
    path = os.path.abspath(path).rstrip("/") + "/"
    broad = (
        "/tmp",
        "/var/tmp",
        "/dev/shm",
        "/home",
        "/root",
        tempfile.gettempdir(),
        os.path.expanduser("~"),
    )
    return any((os.path.abspath(b).rstrip("/") + "/").startswith(path) for b in broad)


def _covers_runtime_base(path: str) -> bool:
    """True for sys.path entries (typically the working directory) that are the
    temp directory or above it: binding those would show the sandbox every
    host temp file, and hide the runtime's socket behind a 0700 directory."""
    base = str(base_dir().resolve())
    path = os.path.abspath(path)
    return path == "/" or base == path or base.startswith(path.rstrip("/") + "/")


def _sandbox_setting(value: SandboxArg) -> tuple[SandboxMode, SandboxPolicy]:
    if isinstance(value, SandboxMode):
        return value, SandboxPolicy()
    if isinstance(value, SandboxPolicy):
        return SandboxMode.AUTO, value
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], SandboxMode)
        and isinstance(value[1], SandboxPolicy)
    ):
        return value[0], value[1]
    raise TypeError(
        f"sandbox must be a SandboxMode, a SandboxPolicy or a (mode, policy) pair, not {value!r}"
    )


def _start_error(name: str, body: Any) -> ActorStartError:
    try:
        module, qualname, args, tb = body
        detail = f"{module}.{qualname}: {', '.join(map(str, args))}".replace("builtins.", "")
    except Exception:
        detail, tb = repr(body), ""
    error = ActorStartError(
        f"actor {name!r} failed to start: {detail}\n\nRemote traceback:\n{tb}", actor=name
    )
    return error


def _target_spec(target: type | str) -> tuple[str, str | None]:
    """``"module:Qualname"`` for the child, plus the main script's path when the
    class lives in ``__main__``."""
    if isinstance(target, str):
        module, sep, qualname = target.partition(":")
        if not sep or not module or not qualname:
            raise ValueError(f"actor target {target!r} is not of the form 'module:Class'")
        return target, None
    if not isinstance(target, type):
        raise TypeError(f"actor target must be a class or 'module:Class', not {target!r}")
    if "<locals>" in target.__qualname__:
        raise ValueError(
            f"{target.__qualname__} is defined inside a function; an actor class must be "
            "defined at module level so that the actor process can import it"
        )
    module = target.__module__
    main_path = None
    if module in ("__main__", "__mp_main__"):
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        if not main_file:
            raise ValueError(
                f"{target.__qualname__} is defined in an interactive session; define it "
                "in a module and pass the class or 'module:Class'"
            )
        main_path = os.path.abspath(main_file)
        module = "__main__"
    return f"{module}:{target.__qualname__}", main_path
