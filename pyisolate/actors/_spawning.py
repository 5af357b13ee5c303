"""What one spawn asks for, the checks made before anything starts, and the
runtime's spawn pipeline: prepare -> launch -> wait for READY (:class:`Spawner`).

``Runtime.spawn(target, *args, name=, sandbox=, options=, init=, **kwargs)``
becomes a :class:`SpawnRequest`; supervisors build requests of their own
(a reused actor id, a template scope), which is why those settings are not
keywords of the public method. ``init`` carries constructor keywords whose
names spawn itself takes (``name``, ``sandbox``, ``options``, ``init``); a
constructor keyword given plainly under such a name is refused when the
class's constructor takes it too, with a message that says how to pass it.
"""

from __future__ import annotations

import inspect
import logging
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .._wire import Codec, EncodeContext
from ..environment import SHARED_WITH_ACTORS
from ..errors import ActorStartError
from ..sandbox import LaunchRequest, SandboxMode, SandboxPolicy, sandbox_for
from ._exits import ExitHandling
from ._launchers import ActorStart, ForkLauncher, Launcher
from ._oob import encode_with_fds
from ._options import SpawnOptions, default_compute_threads
from ._peercred import enable_credentials
from ._process import ActorProcess, python_command
from ._record import _Record
from ._spawnargs import (
    SandboxArg,
    is_installation_path,
    own_uid,
    sandbox_setting,
    target_spec,
    too_broad,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from ..transport.lowlevel import LazySession
    from ._capabilities import Capabilities
    from ._fdbudget import FdBudget
    from ._ref import ActorRef

_PKG_ROOT = str(Path(__file__).resolve().parents[2])
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)

__all__ = ["SpawnRequest", "Spawner", "check_collisions", "code_paths"]


@attrs.frozen
class SpawnRequest:
    """One actor to start. ``actor_id``: reuse an id (a supervised restart:
    references follow the actor); None for a new one. ``template_scope``:
    False to follow ``options.template``; True for a shared template; any
    other value scopes a template to one owner."""

    target: type | str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    name: str | None = None
    sandbox: SandboxArg | None = None
    options: SpawnOptions | None = None
    actor_id: int | None = None
    template_scope: Any = False


def check_collisions(target: type | str, given: Mapping[str, Any], init: Mapping[str, Any]) -> None:
    """Refuse ``spawn(Person, name="Bob")`` when ``Person(name=...)`` exists:
    the keyword would name the actor, not reach the constructor."""
    if not isinstance(target, type):
        return  # "module:Class": the actor says so if its constructor misses one
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return
    for key, value in given.items():
        if value is None or key not in params or key in init:
            continue
        raise TypeError(
            f"{target.__qualname__}() takes a {key!r} argument, and spawn() takes {key!r} "
            f"for itself ({_meaning[key]}). Pass the constructor's as "
            f"rt.spawn({target.__qualname__}, init={{{key!r}: ...}})"
            + ("" if key == "init" else f", and spawn's as {key}=... beside it")
        )


_meaning = {
    "name": "the actor's name",
    "sandbox": "the actor's sandbox",
    "options": "its SpawnOptions",
    "init": "constructor keywords",
}


def code_paths(
    options: SpawnOptions, main_path: str | None, pkg_root: str
) -> tuple[list[str], list[str], bool]:
    """The actor's sys.path, the directories bound read-only into its sandbox,
    and whether the main script is bound alone (without the files beside it)."""
    sys_path = [os.path.abspath(p) if p else os.getcwd() for p in sys.path if isinstance(p, str)]
    if options.python:
        # Another interpreter (a virtual environment) keeps its own packages;
        # it only gets our code directories in front of them.
        sys_path = [p for p in sys_path if not is_installation_path(p)]
    ro_binds = [p for p in sys_path if not too_broad(p)] + [pkg_root]
    alone = False
    if main_path:
        # The script's directory holds the modules it imports; but a script in
        # a temp or home directory gets itself alone: binding those would show
        # the sandbox every file beside it.
        main_dir = os.path.dirname(main_path)
        alone = too_broad(main_dir)
        ro_binds.append(main_path if alone else main_dir)
    if options.python:
        ro_binds.append(os.path.dirname(os.path.dirname(os.path.abspath(options.python))))
    return sys_path, ro_binds, alone


class Spawner(ExitHandling):
    """The spawn pipeline of the Runtime (a mixin; the Runtime owns the state
    declared here for the type checker)."""

    _open: bool
    _ids: Iterator[int]
    _records: dict[int, _Record]
    _caps: Capabilities
    _fds: FdBudget
    _codec: Codec
    _launcher: Launcher
    _forks: ForkLauncher
    _tg: Any
    transport: LazySession
    options: SpawnOptions
    sandbox: tuple[SandboxMode, SandboxPolicy]
    endpoint: str
    socket_path: str

    # Provided by the Sender (the frame-limit check).
    _check_size: Callable[[int], None]

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
        for var in SHARED_WITH_ACTORS:
            if var in os.environ:
                env[var] = os.environ[var]
        env.update(opts.env)
        return env
