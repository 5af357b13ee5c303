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

import itertools
import logging
import os
import secrets
import socket
import sys
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import msgpack

from .._wire import (
    HEADER_SIZE,
    HOST,
    Codec,
    EncodeContext,
    Kind,
    Limits,
    encode_header,
    exception_to_wire,
)
from ..environment import SHARED_WITH_ACTORS
from ..errors import (
    ActorClosedError,
    ActorDiedError,
    ActorError,
    ActorStartError,
    TransportError,
)
from ..sandbox import LaunchRequest, SandboxMode, sandbox_for
from ..transport.lowlevel import LazySession, resolve_transports
from ._calls import CallTable
from ._capabilities import Capabilities
from ._channel import (
    HOST_SNDHWM,
    Context,
    PeerBusy,
    PeerGone,
    Pump,
    check_size,
    close_sockets,
    host_socket,
    monitor_socket,
)
from ._fdbudget import FdBudget
from ._hosting import IncarnationView
from ._launchers import ActorStart, ColdLauncher, ForkLauncher, Launcher
from ._oob import encode_with_fds, forward_fds
from ._options import SpawnOptions, default_compute_threads
from ._peercred import enable_credentials
from ._process import ActorProcess, describe_exit, python_command
from ._record import _Record
from ._ref import ActorRef
from ._router import Router
from ._rundir import RuntimeDir, sweep_stale
from ._spawnargs import SandboxArg, own_uid, sandbox_setting, target_spec
from ._spawning import SpawnRequest, check_collisions, code_paths

if TYPE_CHECKING:
    from ..transport.lowlevel import TransportArg, TransportSession

if TYPE_CHECKING:
    from ._hosting import CallHolder, Supervisable

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
_KILL_GRACE = 2.0
_LAST_WORDS_GRACE = 0.5
_SHARED_SWITCHES = SHARED_WITH_ACTORS
_TRANSPORT_TICK = 0.5
_H = TypeVar("_H")


class Runtime(Router):
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
        launcher: Launcher | None = None,
        transports: Sequence[TransportArg] | None = None,
    ) -> None:
        """``options``: the default :class:`SpawnOptions`; ``sandbox``: the
        default sandbox (see :meth:`spawn`); ``limits``: what the host accepts
        from an actor (:class:`~pyisolate.Limits`; actors get the same);
        ``launcher``: how cold actors are started (default: a new process
        each; tests inject :class:`pyisolate.actors.testing.RecordingLauncher`);
        ``transports``: the host's transports in order of preference (instances,
        :class:`~pyisolate.transport.TransportSpec` values or registered names;
        default: cuda_ipc, shm, file, inline).
        """
        self.options = options or SpawnOptions()
        # The host's sending order (checked now, made with the session); see
        # _new_transport_session for what the actors use.
        self._transports = None if transports is None else resolve_transports(transports)
        self.sandbox = sandbox_setting(sandbox)
        self._codec = Codec(limits=limits)
        self._ids = itertools.count(1)
        self._records: dict[int, _Record] = {}
        self._by_routing: dict[bytes, _Record] = {}
        self.calls = CallTable(self._send_to)
        self._caps = Capabilities()
        self._host_handlers = self._make_host_handlers()
        self._fds = FdBudget()
        self._launcher = launcher or ColdLauncher()
        self._forks = ForkLauncher()  # templates: SpawnOptions(template=True), supervisors
        self.transport: Any = None
        self._open = False
        self._closed = False
        # Awaited at close before the actors stop (supervisors: they would
        # restart them), last first; see before_close.
        self._before_close: list[Callable[[], Awaitable[None]]] = []
        # Actor-to-actor calls held for supervised actors between incarnations
        # (actor id -> the supervisor's holder), see hold_calls.
        self._holds: dict[int, CallHolder] = {}

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        if self._open or self._closed:
            raise RuntimeError("a Runtime can be entered only once")
        child = sys.modules.get("pyisolate.actors._target")
        script = getattr(child, "importing_main", None)
        if script is not None:
            raise RuntimeError(
                f"{script} started a Runtime while an actor process was importing it (actors "
                "import the main script to find the classes defined there). Put the code that "
                'starts the Runtime under  if __name__ == "__main__":'
            )
        sweep_stale()
        FdBudget.raise_soft_limit()
        self._dir = RuntimeDir()
        self._zctx: Context[Any] = Context(io_threads=1)
        router = host_socket(self._zctx, self._codec.limits.max_frame)
        self.socket_path = str(self._dir.path / "router.sock")
        if len(self.socket_path.encode()) > 107:
            close_sockets(self._zctx, router)
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
        self._pump = Pump(router, self._on_message, on_send_error=self._on_send_error)
        # Disconnects (a crash, or zmq dropping an oversized message) arrive on
        # a monitor socket without the peer's identity: probe who is gone.
        self._monitor = monitor_socket(router)
        self._monitor_pump = Pump(self._monitor, self._on_monitor_event)
        self.transport = LazySession(self._new_transport_session)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._launcher.bind(self._tg)
        self._forks.bind(self._tg)
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
                close_sockets(self._zctx, self._monitor, self._router)
                self._dir.close()

    async def _stop_all(self) -> None:
        # Supervisors first: they would restart the children stopped below.
        for callback in reversed(self._before_close):
            await callback()
        records = [r for r in self._records.values() if r.state in ("starting", "running")]
        async with anyio.create_task_group() as tg:
            for record in reversed(records):
                tg.start_soon(self.stop_actor, record.id, None)
        self.calls.fail_peer_all(lambda: ActorClosedError("the runtime was closed"))
        await self._forks.aclose()
        await self._launcher.aclose()

    @property
    def directory(self) -> Path:
        """The runtime's private directory (mode 0700), removed on exit."""
        return self._dir.path

    @classmethod
    def blocking(cls, **kwargs: Any) -> Any:
        """The same API for synchronous code: ``with Runtime.blocking() as rt:``."""
        # Through the package's door: _blocking imports this module.
        from . import BlockingRuntime

        return BlockingRuntime(**kwargs)

    # -- spawning ----------------------------------------------------------------

    async def spawn(
        self,
        target: type | str,
        *args: Any,
        name: str | None = None,
        sandbox: SandboxArg | None = None,
        options: SpawnOptions | None = None,
        init: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Start an actor process running ``target(*args, **kwargs)``; return its
        reference once the constructor and ``on_start`` have run.

        ``target`` is a class (defined at module level, the main script included)
        or a ``"module:Class"`` string. Start-up failures raise ActorStartError
        with the child's traceback.

        ``name``: the actor's name (unique among running actors; default
        ``<class>-<id>``). ``sandbox``: a :class:`SandboxMode`, a
        :class:`SandboxPolicy` (run under AUTO), or a ``(mode, policy)`` pair;
        default: the runtime's. ``options``: a :class:`SpawnOptions`. Every
        other keyword goes to the actor's constructor; ``init={...}`` passes
        constructor keywords named like these four.
        """
        check_collisions(target, {"name": name, "sandbox": sandbox, "options": options}, init or {})
        return await self._spawn(
            SpawnRequest(target, args, {**(init or {}), **kwargs}, name, sandbox, options)
        )

    async def _spawn(self, request: SpawnRequest) -> ActorRef:
        """prepare -> launch -> wait for READY (supervisors come in here too)."""
        if not self._open:
            raise RuntimeError("the Runtime is not running: use 'async with Runtime() as rt'")
        opts = request.options or self.options
        spec, main_path = target_spec(request.target)
        # A supervisor restarts a child under its old id: references follow it.
        actor_id = next(self._ids) if request.actor_id is None else request.actor_id
        name = request.name or f"{spec.rpartition(':')[2].rpartition('.')[2].lower()}-{actor_id}"
        if any(
            r.name == name and r.state in ("starting", "running") for r in self._records.values()
        ):
            raise ValueError(f"an actor named {name!r} is already running")
        # References to this id are granted with its token (kept across restarts).
        self._caps.new_actor(actor_id)
        with self._fds.reserve(name):
            start = self._prepare(request, opts, spec, main_path, actor_id, name)
            record = start.record
            try:
                process = None
                if start.template_scope is not None:
                    process = await self._forks.launch(start)
                if process is None:
                    process = await self._launcher.launch(start)
                if process is None:
                    raise ActorStartError(
                        f"the launcher {self._launcher!r} did not start actor {name!r}", actor=name
                    )
            except BaseException:
                record.state = "dead"
                self._close_channel(record)
                raise
            finally:
                start.child_end.close()
            return await self._until_ready(record, process)

    def _prepare(
        self,
        request: SpawnRequest,
        opts: SpawnOptions,
        spec: str,
        main_path: str | None,
        actor_id: int,
        name: str,
    ) -> ActorStart:
        """The actor's record, encoded constructor arguments, bootstrap and
        launch request. An argument that cannot be sent raises TypeError here,
        before a process is started; its tensors' fds wait in the side channel
        until the actor reads them."""
        mode, policy = (
            sandbox_setting(request.sandbox) if request.sandbox is not None else self.sandbox
        )
        scope = request.template_scope
        if scope is False:
            scope = True if opts.template else None
        # A template without a scope is shared by every actor of these settings.
        policy = own_uid(policy, actor_id, shared=scope is True)
        host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ectx = EncodeContext(peer=actor_id, session=self.transport, endpoint=self)
        try:
            body = [list(request.args), dict(request.kwargs)]
            init_body = encode_with_fds(self._codec, body, host_end, ectx, self._check_size)
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
        sys_path, ro_binds, main_alone = code_paths(opts, main_path, _PKG_ROOT)
        boot = {
            "endpoint": self.endpoint,
            "actor_id": actor_id,
            "token": record.token,
            "name": name,
            "target": spec,
            "main_path": main_path,
            "main_alone": main_alone and mode is not SandboxMode.DISABLED,
            "sys_path": sys_path,
            "sys_path_mode": "prepend" if opts.python else "replace",
            "channel_fd": child_end.fileno(),
            "log_level": logging.getLogger(f"pyisolate.actor.{name}").getEffectiveLevel(),
            "sync_threads": opts.sync_threads,
            "backend": opts.backend,
            "cwd": opts.cwd or os.getcwd(),
            "max_frame": self._codec.limits.max_frame,
        }
        launch = LaunchRequest(
            argv=tuple(python_command(opts.python, _PKG_ROOT if opts.python is None else None)),
            env=self._child_env(opts),
            ro_binds=tuple(ro_binds),
            socket_paths=(self.socket_path,),
            pass_fds=(child_end.fileno(),),
        )
        return ActorStart(
            record, boot, launch, sandbox_for(mode, policy), opts, child_end, _PKG_ROOT, scope
        )

    async def _until_ready(self, record: _Record, process: ActorProcess) -> ActorRef:
        """Watch a launched actor and wait for its READY (or its failure)."""
        record.process = process
        self._tg.start_soon(self._watch, record)
        self._tg.start_soon(process.pump_output, "stdout")
        self._tg.start_soon(process.pump_output, "stderr")
        timeout = record.options.start_timeout
        try:
            with anyio.fail_after(timeout):
                await record.ready.wait()
        except TimeoutError:
            process.kill()
            raise ActorStartError(
                f"actor {record.name!r} did not start within {timeout} s", actor=record.name
            ) from None
        except BaseException:
            process.kill()
            raise
        if record.start_error is not None:
            process.kill()
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
        if record.state == "starting":  # its start error quotes its last words
            await record.process.output_drained(timeout=1.0)
        if record.state == "starting" and not record.ready.is_set():
            # Its last words (START_FAILED with the traceback) may still be on
            # their way through ZeroMQ: they say more than the exit status.
            with anyio.move_on_after(_LAST_WORDS_GRACE):
                await record.ready.wait()
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

    def _new_transport_session(self) -> TransportSession:
        from ..transport.lowlevel import TransportSession  # the first tensor: not before

        # Only the host's session takes ``transports=``: each actor builds its
        # own from the registry of its process (PYISOLATE_TRANSPORT, forwarded,
        # forces one on both sides; a custom transport must be registered by a
        # module the actor imports to be received there).
        return TransportSession(
            send_control=self._send_transport_control,
            workdir=str(self._dir.path),
            transports=self._transports,
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

    def make_ref(
        self,
        actor_id: int,
        name: str,
        methods: dict[str, str] | None,
        token: bytes = b"",
        source: int = HOST,
    ) -> ActorRef:
        """A reference decoded from a message of ``source``: it must carry the
        actor's capability token (an actor cannot make one up)."""
        if source != HOST and not self._caps.verify(actor_id, token):
            raise ValueError(f"forged reference to actor id {actor_id} (wrong capability token)")
        record = self._records.get(actor_id)
        if record is not None and record.ref is not None:
            return record.ref
        return ActorRef(self, actor_id, name, methods)

    def ref_token(self, actor_id: int, to_peer: int) -> bytes:
        """Encoding a reference for ``to_peer`` grants it (see _capabilities)."""
        if to_peer != HOST:
            self._caps.grant(to_peer, actor_id)
        return self._caps.token(actor_id)

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
        process = record.process
        with anyio.move_on_after(grace):
            await process.exited.wait()
        if process.exited.is_set():
            return
        log.warning("actor %r did not stop within %s s: killing it", record.name, grace)
        # kill() escalates by itself: its whole sandbox (launcher, or template)
        # goes after KILL_GRACE; every wait here is bounded all the same.
        process.kill()
        with anyio.move_on_after(_KILL_GRACE):
            await process.exited.wait()
        if not process.exited.is_set():
            log.warning("actor %r did not die when killed: killing its sandbox", record.name)
            process.kill_sandbox()
            with anyio.move_on_after(_KILL_GRACE):
                await process.exited.wait()
        if not process.exited.is_set():
            log.error(
                "actor %r could not be stopped (its process does not end even with its "
                "sandbox killed): giving up on it",
                record.name,
            )

    async def supervise(self, spec: Supervisable[_H]) -> _H:
        """Start a supervision tree from a :class:`~pyisolate.Supervisor` spec;
        return its handle once every child runs (see ``pyisolate.supervision``)."""
        if not self._open:
            raise RuntimeError("the Runtime is not running: use 'async with Runtime() as rt'")
        return await spec.start(self)

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
        # Never a pid numbered inside a sandbox (the template's view of a
        # forked actor): the kernel's translation, or our own child's.
        return record.process.host_pid

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
            data = encode_with_fds(self._codec, body, record.channel, ectx, self._check_size)
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

    def _check_size(self, nbytes: int) -> None:
        check_size(nbytes, self._codec.limits.max_frame - HEADER_SIZE)

    def _emit(self, record: _Record, payload: bytes) -> None:
        try:
            self._pump.send(payload, record.routing)
        except PeerGone:
            self._on_disconnect(record)
            raise ActorDiedError(
                f"actor {record.name!r} is gone: its connection closed (it died or is exiting)",
                actor=record.name,
            ) from None
        except PeerBusy:
            raise ActorError(
                f"actor {record.name!r} is not reading its messages: {HOST_SNDHWM} are queued "
                "for it already",
                actor=record.name,
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

    # -- the interface of pyisolate.supervision -------------------------------------
    # Internal: what a supervisor needs from its runtime beyond the public API,
    # listed by pyisolate.supervision's SupervisorHost protocol (mypy checks
    # that Runtime implements it). Not for applications.

    def reserve_actor_id(self) -> int:
        """A fresh actor id, for a child whose incarnations will all bear it."""
        return next(self._ids)

    async def spawn_incarnation(
        self,
        target: type | str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        actor_id: int,
        name: str,
        sandbox: SandboxArg | None,
        options: SpawnOptions | None,
        template_scope: Hashable | None,
    ) -> ActorRef:
        """Start one incarnation of a supervised child under ``actor_id``,
        forked from the template of ``template_scope`` (the child's own), or as
        ``options`` say when None."""
        return await self._spawn(
            SpawnRequest(
                target,
                tuple(args),
                dict(kwargs),
                name=name,
                sandbox=sandbox,
                options=options,
                actor_id=actor_id,
                template_scope=False if template_scope is None else template_scope,
            )
        )

    def incarnation(self, actor_id: int) -> IncarnationView | None:
        """The latest incarnation under ``actor_id`` (a failed start included)."""
        record = self._records.get(actor_id)
        return None if record is None else IncarnationView(self, record)

    def hold_calls(self, actor_id: int, holder: CallHolder) -> None:
        """Have the router offer ``holder`` the actor-to-actor frames for
        ``actor_id`` while no incarnation runs, and tell it when one is READY."""
        self._holds[actor_id] = holder

    def release_calls(self, actor_id: int) -> None:
        self._holds.pop(actor_id, None)

    def forward_held(
        self, caller: Any, kind: Kind, call_id: int, actor_id: int, frame: bytes, fds: list[int]
    ) -> None:
        """Route a frame a holder kept, unless its caller (a record) is gone."""
        record = self._records.get(caller.id)
        if record is None or record is not caller or record.state != "running":
            forward_fds(fds, None)  # closes them
            return
        self._forward(record, kind, call_id, actor_id, frame, fds)

    def answer_with_error(
        self, caller_id: int, call_id: int, actor_id: int, error: BaseException
    ) -> None:
        self._send_error_to(caller_id, call_id, actor_id, error)

    def discard_fds(self, fds: list[int]) -> None:
        forward_fds(fds, None)  # closes them

    async def start_service(self, service: Callable[..., Awaitable[Any]]) -> Any:
        """Run ``service`` in the runtime's task group (``TaskGroup.start``)."""
        return await self._tg.start(service)

    def before_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._before_close.append(callback)

    def release_template(self, scope: Hashable) -> None:
        """Shut down the templates scoped to ``scope`` (their owner is done)."""
        self._forks.release(scope)
