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
import sys
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .._wire import (
    HOST,
    Codec,
    Kind,
    Limits,
)
from ..errors import (
    ActorClosedError,
    ActorDiedError,
    ActorError,
)
from ..sandbox import SandboxMode
from ..transport.lowlevel import LazySession, resolve_transports
from ._calls import CallTable
from ._capabilities import Capabilities
from ._channel import (
    Context,
    Pump,
    close_sockets,
    host_socket,
    monitor_socket,
)
from ._fdbudget import FdBudget
from ._hosting import SupervisorHosting
from ._launchers import ColdLauncher, ForkLauncher, Launcher
from ._options import SpawnOptions
from ._ref import ActorRef
from ._router import Router
from ._rundir import RuntimeDir, sweep_stale
from ._spawnargs import SandboxArg, sandbox_setting
from ._spawning import Spawner, SpawnRequest, check_collisions

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence
    from pathlib import Path

    from ..transport.lowlevel import TransportArg, TransportSession
    from ._record import _Record

if TYPE_CHECKING:
    from ._hosting import CallHolder, Supervisable

__all__ = ["Runtime"]

log = logging.getLogger("pyisolate.runtime")

_KILL_GRACE = 2.0

_TRANSPORT_TICK = 0.5
_H = TypeVar("_H")


class Runtime(Spawner, SupervisorHosting, Router):
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
