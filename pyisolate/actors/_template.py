"""The host's side of warm templates (see ``_forkserver``): spawn by fork.

``Runtime.spawn(..., _template=True)`` (supervisors do this for every
restart; ``SpawnOptions(template=True)`` once it exists) asks here for a
template that matches the actor's interpreter, environment, sandbox policy
and binds, starts one if needed, and has it fork the actor. Where that is
impossible (no ``fork``, not Linux, the template failed, a CUDA context in
it) the spawn goes cold, and a debug record says why.

A forked actor is not the host's child: its exit status comes from the
template, which reaps it; :class:`ForkedProcess` gives the runtime the same
interface as a cold :class:`ActorProcess`.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import socket
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import ActorStartError
from ._bootstrap import write_bootstrap
from ._forkserver import recv_message, send_message
from ._process import ActorProcess

if TYPE_CHECKING:
    from ._record import _Record
    from ._runtime import Runtime

__all__ = ["ForkedProcess", "TemplatePool", "spawn_forked"]

log = logging.getLogger("pyisolate.template")

_PREFIX = (
    "import sys; sys.path.insert(0, {root!r}); "
    "from pyisolate.actors._forkserver import template_main; template_main()"
)


class _Pipes:
    """The ``proc`` attribute ActorProcess.pump_output reads from."""

    def __init__(self, stdout: Any, stderr: Any) -> None:
        self.stdout = stdout
        self.stderr = stderr


class ForkedProcess(ActorProcess):
    """An actor forked by a template; the template reports its exit."""

    def __init__(
        self,
        template: Template,
        pid: int,
        stdin_w: int,
        stdout_r: int,
        stderr_r: int,
        logger: logging.Logger,
    ) -> None:
        # Not ActorProcess.__init__: that one starts a process.
        self.logger = logger
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=60)
        self.proc = _Pipes(open(stdout_r, "rb", buffering=0), open(stderr_r, "rb", buffering=0))  # type: ignore[assignment]  # noqa: SIM115
        self.pid = pid  # as the template sees it (a sandbox may renumber)
        self.actor_pid: int | None = None
        self._returncode_map = None
        self._stdin = open(stdin_w, "wb", buffering=0)  # noqa: SIM115
        self.exited = anyio.Event()
        self.returncode: int | None = None
        self._template = template
        self._reported = anyio.Event()
        self._code: int | None = None

    def kill(self) -> None:
        if self.returncode is None and self._code is None:
            self._template.kill(self.pid)

    def report_exit(self, code: int) -> None:
        self._code = code
        self._reported.set()

    async def watch(self) -> None:
        try:
            await self._reported.wait()
            self.returncode = self._code
        finally:
            if self.returncode is None:  # cancelled (runtime closing): make sure
                self.kill()
                self.returncode = -9
            self._close_stdin()
            self.exited.set()


class Template:
    """One warm template process and its control socket."""

    def __init__(self, rt: Runtime, key: Any) -> None:
        self.rt = rt
        self.key = key
        self.ready = anyio.Event()
        self.failed: str | None = None
        self.children: dict[int, ForkedProcess] = {}
        self._replies: dict[int, Any] = {}
        self._waiters: dict[int, anyio.Event] = {}
        self._seq = itertools.count(1)
        self.proc: subprocess.Popen[bytes] | None = None

    async def run(
        self,
        plan_args: dict[str, Any],
        config: dict[str, Any],
        *,
        task_status: Any = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start the template and serve its control socket until the runtime ends."""
        from ..sandbox import build_launch

        host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ctl = host_end
        control_fd = child_end.fileno()
        try:
            argv = [
                plan_args.pop("python") or sys.executable,
                "-c",
                _PREFIX.format(root=plan_args.pop("pkg_root")),
            ]
            plan = build_launch(
                plan_args.pop("policy"),
                plan_args.pop("mode"),
                argv,
                pass_fds=[child_end.fileno()],
                **plan_args,
            )
            try:
                self.isolation = plan.isolation
                self.proc = subprocess.Popen(
                    plan.argv,
                    env=plan.env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    pass_fds=plan.pass_fds,
                    start_new_session=True,
                )
            finally:
                plan.close()
                child_end.close()
            assert self.proc.stdin is not None
            write_bootstrap(self.proc.stdin.fileno(), {**config, "control_fd": control_fd})
            task_status.started()
            await self._serve()
        except BaseException as exc:
            if self.failed is None:
                self.failed = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._shutdown()

    async def _serve(self) -> None:
        self.ctl.setblocking(False)
        while True:
            await anyio.wait_readable(self.ctl)
            try:
                message, fds = recv_message(self.ctl)
            except BlockingIOError:
                continue
            for fd in fds:
                os.close(fd)
            if message is None:
                self.failed = self.failed or "the template exited"
                return
            op = message.get("op")
            if op == "ready":
                if message.get("errors"):
                    log.debug("template preload errors: %s", message["errors"])
                self.ready.set()
            elif op == "exit":
                child = self.children.pop(message["pid"], None)
                if child is not None:
                    child.report_exit(int(message["code"]))
            elif op in ("forked", "error"):
                seq = message.get("seq")
                if seq in self._waiters:
                    self._replies[seq] = message
                    self._waiters.pop(seq).set()

    def _shutdown(self) -> None:
        self.ready.set()
        for seq, event in list(self._waiters.items()):
            self._replies[seq] = {"op": "error", "error": self.failed or "template closed"}
            event.set()
        self._waiters.clear()
        if self.proc is not None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # the lifeline: the template exits, its actors too
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for child in self.children.values():
            child.report_exit(-9)
        self.children.clear()
        self.ctl.close()

    def kill(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            send_message(self.ctl, {"op": "kill", "pid": pid})

    async def fork(
        self, preload: list[str], channel: socket.socket, channel_to: int, logger: logging.Logger
    ) -> ForkedProcess:
        """Fork one actor; the caller writes its bootstrap to ``_stdin``."""
        await self.ready.wait()
        if self.failed is not None:
            raise OSError(self.failed)
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        seq = next(self._seq)
        event = self._waiters[seq] = anyio.Event()
        try:
            send_message(
                self.ctl,
                {"op": "fork", "seq": seq, "preload": preload, "channel_to": channel_to},
                [stdin_r, stdout_w, stderr_w, channel.fileno()],
            )
        except OSError:
            self._waiters.pop(seq, None)
            for fd in (stdin_w, stdout_r, stderr_r):
                os.close(fd)
            raise
        finally:
            for fd in (stdin_r, stdout_w, stderr_w):
                os.close(fd)
        await event.wait()
        reply = self._replies.pop(seq)
        if reply.get("op") != "forked":
            for fd in (stdin_w, stdout_r, stderr_r):
                os.close(fd)
            raise OSError(reply.get("error", "fork failed"))
        child = ForkedProcess(self, int(reply["pid"]), stdin_w, stdout_r, stderr_r, logger)
        self.children[child.pid] = child
        return child


class TemplatePool:
    """The templates of one runtime, by (interpreter, environment, sandbox)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.templates: dict[Any, Template] = {}

    async def get(self, key: Any, plan_args: dict[str, Any], config: dict[str, Any]) -> Template:
        template = self.templates.get(key)
        if template is None or template.failed is not None:
            template = self.templates[key] = Template(self.rt, key)
            await self.rt._tg.start(template.run, plan_args, config)
        return template


def _preload_for(target: str) -> list[str]:
    module = target.partition(":")[0]
    return [] if module in ("__main__", "__mp_main__") else [module]


async def spawn_forked(
    rt: Runtime,
    record: _Record,
    boot: dict[str, Any],
    mode: Any,
    policy: Any,
    opts: Any,
    ro_binds: list[str],
    child_end: socket.socket,
    pkg_root: str,
    scope: Any = None,
) -> Any:
    """Spawn ``record``'s actor from a template; None: start it cold instead."""
    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        log.debug("actor %r starts cold: no fork on %s", record.name, sys.platform)
        return None
    env = rt._child_env(opts)
    key = (str(mode), repr(policy), opts.python, tuple(sorted(env.items())), tuple(ro_binds), scope)
    pool: TemplatePool = rt.__dict__.setdefault("_template_pool", TemplatePool(rt))
    plan_args = {
        "python": opts.python,
        "pkg_root": pkg_root if opts.python is None else "",
        "policy": policy,
        "mode": mode,
        "env": env,
        "ro_binds": ro_binds,
        "rw_binds": [],
        "socket_paths": [rt.socket_path],
    }
    config = {
        "sys_path": boot["sys_path"],
        "cwd": boot.get("cwd"),
        "preload": _preload_for(boot["target"]),
    }
    name = record.name
    try:
        template = await pool.get(key, plan_args, config)
        process = await template.fork(
            _preload_for(boot["target"]),
            child_end,
            int(boot["channel_fd"]),
            logging.getLogger(f"pyisolate.actor.{name}"),
        )
    except Exception as exc:
        log.debug("actor %r starts cold: the template failed: %s", name, exc)
        return None
    child_end.close()
    record.isolation = getattr(template, "isolation", "none")
    record.process = process
    write_bootstrap(process._stdin.fileno(), boot)
    rt._tg.start_soon(rt._watch, record)
    rt._tg.start_soon(process.pump_output, "stdout")
    rt._tg.start_soon(process.pump_output, "stderr")
    try:
        with anyio.fail_after(opts.start_timeout):
            await record.ready.wait()
    except TimeoutError:
        process.kill()
        raise ActorStartError(
            f"actor {name!r} did not start within {opts.start_timeout} s", actor=name
        ) from None
    except BaseException:
        process.kill()
        raise
    if record.start_error is not None:
        process.kill()
        raise record.start_error
    assert record.ref is not None
    return record.ref
