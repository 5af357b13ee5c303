"""A forked actor as the host sees it: the same interface as a cold one.

A forked actor is not the host's child: the template forked it and reaps it,
and reports its exit status (``_template``). :class:`ForkedProcess` gives the
runtime what :class:`~pyisolate.actors._process.ActorProcess` gives for a cold
actor, and trusts the template with nothing it cannot check: it watches the
actor through a pidfd of its own (its kernel-translated pid), and declares the
template dead if the exit is not reported within REPORT_GRACE seconds.
"""

from __future__ import annotations

import collections
import logging
import signal
from typing import TYPE_CHECKING, Any

import anyio

from ._pidfd import ProcessHandle
from ._process import ActorProcess

if TYPE_CHECKING:
    from ._template import Template

__all__ = ["REPORT_GRACE", "ForkedProcess"]

log = logging.getLogger("pyisolate.template")

# Seconds the template has to report an actor's exit once its pidfd shows it.
REPORT_GRACE = 3.0


class _Pipes:
    """The ``proc`` attribute ActorProcess.pump_output reads from."""

    def __init__(self, stdout: Any, stderr: Any) -> None:
        self.stdout = stdout
        self.stderr = stderr


class ForkedProcess(ActorProcess):
    """An actor forked by a template; the template reports its exit.

    The template numbers it in the sandbox's pid namespace (``ns_pid``): a
    number only the template may use (it asks the template to kill it). The
    host's own handle on it is the pid the kernel translated at the handshake
    (``adopt_actor_pid``): through it the host sees the death even if the
    template never reports it, and then takes the template for dead.
    """

    def __init__(
        self,
        template: Template,
        ns_pid: int,
        stdin_w: int,
        stdout_r: int,
        stderr_r: int,
        logger: logging.Logger,
    ) -> None:
        # Not ActorProcess.__init__: that one starts a process.
        self.logger = logger
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=60)
        self.proc = _Pipes(open(stdout_r, "rb", buffering=0), open(stderr_r, "rb", buffering=0))  # type: ignore[assignment]  # noqa: SIM115
        self.pid = None  # not our child, but the template's
        self.ns_pid = ns_pid  # as the template sees it: for the template's use only
        self.actor_pid: int | None = None
        self._actor: ProcessHandle | None = None
        self._returncode_map = None
        self._stdin = open(stdin_w, "wb", buffering=0)  # noqa: SIM115
        self.exited = anyio.Event()
        self.returncode: int | None = None
        self._kill_requested = anyio.Event()
        self._template = template
        self._reported = anyio.Event()
        self._adopted = anyio.Event()
        self._code: int | None = None

    def adopt_actor_pid(self, pid: int | None) -> None:
        """Take the kernel's pid of the actor if it is the template's descendant."""
        if pid is None or self._actor is not None:
            return
        parent = self._template.template_pid
        if parent is None:
            log.debug("actor pid %d not adopted: the template's own pid is unknown", pid)
            return
        self._set_actor(ProcessHandle.adopt(pid, parent, include_self=False), pid)
        if self._actor is not None:
            self._adopted.set()

    def kill(self) -> None:
        if self.returncode is not None or self._reported.is_set():
            return
        self._kill_requested.set()
        # The template made it: it kills it and its process group. The pidfd
        # makes sure even if the template does not (stopped, hostile).
        self._template.kill_child(self.ns_pid)
        if self._actor is not None:
            self._actor.send(signal.SIGKILL)

    def kill_descendants(self) -> None:
        """The template kills the group when it reaps the actor. Without it
        (declared dead), the host does while the actor lives: the group it
        leads (it called setsid) then still bears its number."""
        if self._actor is not None:
            self._actor.kill_group()

    def kill_by_host(self) -> None:
        """Kill it without the template's help (the template is dead or stopped)."""
        self.kill_descendants()
        if self._actor is not None:
            self._actor.send(signal.SIGKILL)

    def kill_sandbox(self) -> None:
        self._template.declare_dead("forked an actor that did not end when killed")

    def report_exit(self, code: int) -> None:
        if not self._reported.is_set():
            self._code = code
            self._reported.set()

    async def watch(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._escalate)
                tg.start_soon(self._watch_actor)
                await self._reported.wait()
                self.returncode = self._code
                tg.cancel_scope.cancel()
        finally:
            if self.returncode is None:  # cancelled (runtime closing): make sure
                self.kill()
                self.returncode = -signal.SIGKILL
            if self._actor is not None:
                self._actor.close()
            self._close_stdin()
            self.exited.set()

    async def _watch_actor(self) -> None:
        """The actor's end, seen through its pidfd: the template must report it
        within REPORT_GRACE seconds, or it has stopped answering."""
        await self._adopted.wait()
        assert self._actor is not None
        if self._actor.fd is None:
            return
        await self._actor.wait()
        with anyio.move_on_after(REPORT_GRACE):
            await self._reported.wait()
        if not self._reported.is_set():
            self._template.declare_dead(
                f"did not report the exit of an actor within {REPORT_GRACE} s"
            )
