"""The host's side of warm templates (see ``_forkserver``): spawn by fork.

The fork launcher (``_launchers.ForkLauncher``; used for
``SpawnOptions(template=True)`` and for every supervised child) asks the
:class:`TemplatePool` for a template that matches the actor's interpreter,
environment, sandbox and binds, starts one if needed, and has it fork the
actor. Where that is impossible (no ``fork``, not Linux, the template failed,
a CUDA context in it) the spawn goes cold, and a debug record says why.

A forked actor is not the host's child: its exit status comes from the
template, which reaps it; :class:`ForkedProcess` gives the runtime the same
interface as a cold :class:`ActorProcess`. The template is trusted with
nothing the host cannot check: the host watches each forked actor through a
pidfd of its own, and a template that stops answering (a fork request, an
exit report, a kill) within its bound is declared dead and killed with its
sandbox; its actors are reported dead.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ._bootstrap import write_bootstrap
from ._forked import ForkedProcess
from ._forkserver import recv_message_from, send_message
from ._peercred import enable_credentials
from ._pidfd import ProcessHandle

if TYPE_CHECKING:
    from ..sandbox import LaunchRequest, Sandbox

__all__ = ["ForkedProcess", "Template", "TemplatePool", "template_command"]

log = logging.getLogger("pyisolate.template")

# Seconds the template has to exit once its lifeline is closed (then again
# after each kill); its actors' exit reports have REPORT_GRACE (_forked).
_EXIT_GRACE = 2.0

_PREFIX = (
    "import sys; sys.path.insert(0, {root!r}); "
    "from pyisolate.actors._forkserver import template_main; template_main()"
)


def template_command(python: str | None, pkg_root: str) -> tuple[str, ...]:
    """The command that starts a template (``pkg_root``: where this pyisolate
    lives, put first on its path; empty for another interpreter)."""
    return (python or sys.executable, "-c", _PREFIX.format(root=pkg_root))


class Template:
    """One warm template process and its control socket.

    A template that stops answering (no reply to a fork request, no report of
    an actor's exit, an actor that does not die when killed) is declared dead:
    it is killed with its whole sandbox, and each of its actors is reported
    dead, so that callers fail and supervisors restart.
    """

    def __init__(self, key: Any) -> None:
        self.key = key
        self.ready = anyio.Event()
        self.failed: str | None = None
        self.children: dict[int, ForkedProcess] = {}
        self._replies: dict[int, Any] = {}
        self._waiters: dict[int, anyio.Event] = {}
        self._seq = itertools.count(1)
        self.proc: subprocess.Popen[bytes] | None = None
        self.cgroup: Any = None  # the sandbox ActorCgroup of the template and its actors
        # Our child (the sandbox launcher, or the template when unsandboxed),
        # and the template process itself as the kernel numbers it for us.
        self._launcher: ProcessHandle | None = None
        self._self: ProcessHandle | None = None
        self.template_pid: int | None = None
        self._scope = anyio.CancelScope()
        self._down = False  # shut down: nothing left to kill

    async def run(
        self,
        sandbox: Sandbox,
        request: LaunchRequest,
        config: dict[str, Any],
        *,
        task_status: Any = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start the template (``request`` run in ``sandbox``; ``config`` is its
        bootstrap) and serve its control socket until the runtime ends or the
        template is closed or declared dead."""
        host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ctl = host_end
        # Every message the template sends then carries its pid, translated by
        # the kernel into ours: the only pid of the template the host uses.
        enable_credentials(host_end)
        control_fd = child_end.fileno()
        try:
            plan = sandbox.plan(attrs.evolve(request, pass_fds=(control_fd,), cgroup=True))
            # The template and every actor forked from it share one cgroup:
            # they are bounded together and die together.
            self.cgroup = plan.cgroup
            try:
                self.isolation = plan.isolation
                # Popen only forks and execs; nothing here waits on the child.
                self.proc = subprocess.Popen(  # noqa: ASYNC220
                    plan.argv,
                    env=plan.env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    pass_fds=plan.pass_fds,
                    start_new_session=True,
                )
                self._launcher = ProcessHandle.of_child(self.proc.pid)
            finally:
                plan.close()
                child_end.close()
            assert self.proc.stdin is not None
            write_bootstrap(self.proc.stdin.fileno(), {**config, "control_fd": control_fd})
            task_status.started()
            with self._scope:
                await self._serve()
        except BaseException as exc:
            if self.failed is None:
                self.failed = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            await self._shutdown()

    async def _serve(self) -> None:
        self.ctl.setblocking(False)
        while True:
            await anyio.wait_readable(self.ctl)
            try:
                message, fds, sender = recv_message_from(self.ctl)
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
                self._adopt_template(sender)
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

    def _adopt_template(self, pid: int | None) -> None:
        if pid is None or self.proc is None or self._self is not None:
            return
        handle = ProcessHandle.adopt(pid, self.proc.pid, include_self=True)
        if handle is None:
            log.warning("pyisolate: template process %d is not the launcher's descendant", pid)
            return
        self._self, self.template_pid = handle, pid

    def declare_dead(self, reason: str) -> None:
        """The template stopped answering (``reason`` completes "the template
        ..."): kill it, its sandbox and its actors, and report each actor
        dead, so that its callers fail and supervisors restart it."""
        if self.failed is None:
            self.failed = f"the template {reason}"
        if self._scope.cancel_called or self._down:
            return
        log.warning("pyisolate: the template %s: killing it and its actors", reason)
        self._scope.cancel()
        self._kill_everything()
        for child in list(self.children.values()):
            child.report_exit(-signal.SIGKILL)
        self.children.clear()

    def close(self) -> None:
        """Shut down a template nobody needs any more (its lifeline closes: it
        kills its actors and exits), without blocking."""
        if self.failed is None:
            self.failed = "the template was closed"
        self._scope.cancel()

    def _kill_everything(self) -> None:
        # The actors first, while the template cannot reap them (their group
        # numbers are still theirs), then the template: its sandbox ends with it.
        for child in list(self.children.values()):
            child.kill_by_host()
        if self._self is not None and self._self.send(signal.SIGKILL):
            return
        if self._launcher is not None and self.proc is not None and self.proc.returncode is None:
            self._launcher.send(signal.SIGKILL)

    async def _shutdown(self) -> None:
        self.ready.set()
        for seq, event in list(self._waiters.items()):
            self._replies[seq] = {"op": "error", "error": self.failed or "template closed"}
            event.set()
        self._waiters.clear()
        if self.proc is not None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # the lifeline: the template exits, its actors too
            with anyio.CancelScope(shield=True):
                for last_resort in (self._kill_everything, self._kill_launcher, None):
                    if await self._launcher_exited(_EXIT_GRACE) or last_resort is None:
                        break
                    last_resort()
            if self.proc.poll() is None:
                log.error("pyisolate: template process %d could not be reaped", self.proc.pid)
        if self.cgroup is not None:
            self.cgroup.kill()  # whatever the template's actors left behind
            self.cgroup.close()
            self.cgroup = None
        for child in list(self.children.values()):
            child.kill_by_host()
            child.report_exit(-signal.SIGKILL)
        self.children.clear()
        for handle in (self._self, self._launcher):
            if handle is not None:
                handle.close()
        self.ctl.close()
        self._down = True

    def _kill_launcher(self) -> None:
        if self._launcher is not None and self.proc is not None and self.proc.returncode is None:
            self._launcher.send(signal.SIGKILL)

    async def _launcher_exited(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for our child to end (not reaping it)."""
        assert self._launcher is not None
        with anyio.move_on_after(timeout):
            if self._launcher.fd is not None:
                await self._launcher.wait()
            else:
                # No pidfd on this kernel: nothing to wait on but polling.
                while not self._launcher.exited():  # noqa: ASYNC110
                    await anyio.sleep(0.05)
        return self._launcher.exited()

    def kill_child(self, ns_pid: int) -> None:
        """Ask the template to kill one of its actors (its own number for it)."""
        with contextlib.suppress(OSError):
            send_message(self.ctl, {"op": "kill", "pid": ns_pid})

    async def fork(
        self,
        preload: list[str],
        channel: socket.socket,
        channel_to: int,
        logger: logging.Logger,
        timeout: float,
    ) -> ForkedProcess:
        """Fork one actor; the caller writes its bootstrap to ``_stdin``. A
        template that does not start or answer within ``timeout`` s is dead."""
        with anyio.move_on_after(timeout):
            await self.ready.wait()
        if not self.ready.is_set():
            self.declare_dead(f"did not start within {timeout} s")
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
        with anyio.move_on_after(timeout):
            await event.wait()
        if not event.is_set():
            self._waiters.pop(seq, None)
            self.declare_dead(f"did not answer a fork request within {timeout} s")
            reply: dict[str, Any] = {"op": "error", "error": self.failed}
        else:
            reply = self._replies.pop(seq)
        if reply.get("op") != "forked":
            for fd in (stdin_w, stdout_r, stderr_r):
                os.close(fd)
            raise OSError(reply.get("error", "fork failed"))
        child = ForkedProcess(self, int(reply["pid"]), stdin_w, stdout_r, stderr_r, logger)
        self.children[child.ns_pid] = child
        return child


class TemplatePool:
    """The templates of one runtime, by (interpreter, environment, sandbox,
    binds, scope); their serving tasks run in the runtime's task group."""

    def __init__(self, task_group: Any) -> None:
        self._tg = task_group
        self.templates: dict[Any, Template] = {}

    async def get(
        self, key: Any, sandbox: Sandbox, request: LaunchRequest, config: dict[str, Any]
    ) -> Template:
        template = self.templates.get(key)
        if template is None or template.failed is not None:
            template = self.templates[key] = Template(key)
            await self._tg.start(template.run, sandbox, request, config)
        return template

    def release(self, scope: Any) -> None:
        """Shut down the templates of ``scope`` (their owner needs them no more)."""
        for key in [k for k in self.templates if k[-1] == scope]:
            self.templates.pop(key).close()
