"""An actor's OS process as the host sees it: start, output, exit, kill.

The exit is noticed at once, without polling: on Linux through a pidfd (a file
descriptor that becomes readable when the process ends) that the event loop
waits on; elsewhere a thread waits. Which processes the host may signal, and
how, is ``_pidfd``'s business: never a pid from inside a sandbox. An actor's
descendants die with it (its process group, killed before the actor is
reaped). Every kill is followed, if the actor has not ended within
``KILL_GRACE`` seconds, by the kill of its whole sandbox. The child's stdout and stderr are read
line by line and re-emitted through the host's ``logging``, tagged with the
actor's name; records the child logged arrive as records, at their level
(bounded against floods and forgeries by :mod:`._output`).
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import anyio

from ._bootstrap import write_bootstrap
from ._output import ActorOutput
from ._pidfd import ProcessHandle, in_new_pid_namespace

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["KILL_GRACE", "ActorProcess", "describe_exit"]

log = logging.getLogger("pyisolate.runtime")

_TAIL_LINES = 60
# Seconds a SIGKILLed actor gets to end before its whole sandbox is killed,
# and again before the host stops waiting for it.
KILL_GRACE = 2.0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class ActorProcess:
    """Owns one child process and the host ends of its pipes."""

    cgroup: Any = None  # ForkedProcess has its own __init__

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        bootstrap: dict[str, Any],
        pass_fds: Sequence[int] = (),
        logger: logging.Logger,
        cwd: str | None = None,
        returncode_map: Callable[[int], int] | None = None,
        cgroup: Any = None,
    ) -> None:
        self.logger = logger
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        # The actor's own cgroup (a sandbox ActorCgroup) or None: killing it
        # ends every process the actor started, whatever they did since.
        self.cgroup = cgroup
        try:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                pass_fds=tuple(pass_fds),
                cwd=cwd,
                start_new_session=True,  # a Ctrl-C in the host's terminal is the host's
            )
        except BaseException:
            if cgroup is not None:
                cgroup.close()
            raise
        # Our own child: the sandbox launcher (bwrap), or the actor itself
        # when unsandboxed. Pinned at once; it leads its own process group.
        self.pid: int | None = self.proc.pid
        self._child = ProcessHandle.of_child(self.proc.pid)
        # The actor's own pid when the kernel told us (adopt_actor_pid).
        self.actor_pid: int | None = None
        self._actor: ProcessHandle | None = None
        self._returncode_map = returncode_map
        assert self.proc.stdin is not None
        # The write end stays open: it is the child's lifeline (see _child).
        self._stdin = self.proc.stdin
        write_bootstrap(self._stdin.fileno(), bootstrap)
        self.exited = anyio.Event()
        self.returncode: int | None = None
        self._kill_requested = anyio.Event()

    # -- which process is the actor -----------------------------------------------

    def adopt_actor_pid(self, pid: int | None) -> None:
        """Take the actor's pid as the kernel translated it (SCM_CREDENTIALS,
        read at the handshake), if that process is one of ours: the actor is
        our child (unsandboxed) or a descendant of its launcher."""
        if pid is None or self.pid is None:
            return
        self._set_actor(ProcessHandle.adopt(pid, self.pid, include_self=True), pid)

    def _set_actor(self, handle: ProcessHandle | None, pid: int) -> None:
        if handle is None:
            log.warning(
                "pyisolate: actor process %d is not a descendant of the process that "
                "started it: its pid is not used",
                pid,
            )
            return
        if self._actor is not None:
            handle.close()  # one handshake per actor; keep the first
            return
        self._actor = handle
        self.actor_pid = pid

    @property
    def host_pid(self) -> int | None:
        """The actor's pid as this host numbers it: the kernel's word, else
        our own child's (unsandboxed, before the handshake)."""
        return self.actor_pid or self.pid

    # -- killing ------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL the actor and its descendants; if it has not ended within
        KILL_GRACE seconds, :meth:`kill_sandbox` follows (see :meth:`watch`).

        Under bubblewrap we kill the actor (or, before the handshake, the
        sandbox's init: that ends every process in the sandbox), never the
        launcher itself: the launcher then exits and we reap it, and the init
        reaps everything inside. Killing the launcher first would orphan the
        init to the host's pid 1, which in a container may never reap it.
        """
        if self.returncode is not None:
            return
        if self.cgroup is not None:
            self.cgroup.kill()  # the whole tree at once, launcher and init included
        self._kill_requested.set()
        hit = self._actor is not None and self._actor.send(signal.SIGKILL)
        if not hit and self.pid is not None:
            for pid in _children(self.pid):
                # A child in a new pid namespace is the sandbox's init.
                if in_new_pid_namespace(pid, self.pid):
                    init = ProcessHandle.adopt(pid, self.pid, include_self=False)
                    if init is not None:
                        hit = init.send(signal.SIGKILL) or hit
                        init.close()
        if not hit:
            self._child.send(signal.SIGKILL)  # the actor itself, or a launcher not yet forked
        # Its descendants go once it has exited (watch): its process group
        # must not be killed here, as under a sandbox it is the launcher's.

    def kill_descendants(self) -> None:
        """Kill what the actor started: the process group of our child (an
        unsandboxed actor leads it: ``start_new_session``). Called once our
        child has exited, while it is still unreaped, so the group's number is
        still ours. A sandbox needs none of this (its pid namespace ends with
        the actor; the launcher's group holds the launcher alone), and a
        grandchild that started a session of its own escapes the group: a
        per-actor cgroup kill, where there is one, belongs here.
        """
        if self.returncode is None and self.pid is not None:
            self._child.kill_group(leader_unreaped=True)
        if self.cgroup is not None:
            self.cgroup.kill()  # also what left the group (setsid, daemons)

    def kill_sandbox(self) -> None:
        """Last resort when :meth:`kill` did not end the actor: SIGKILL our own
        child (the launcher: its init dies with it, parent-death signal) and
        its process group."""
        if self.returncode is None:
            self._child.send(signal.SIGKILL)
            self.kill_descendants()

    async def _escalate(self) -> None:
        """After a kill: the sandbox goes too if the actor outlives KILL_GRACE."""
        await self._kill_requested.wait()
        await anyio.sleep(KILL_GRACE)
        log.warning(
            "pyisolate: actor %r did not end within %s s of SIGKILL: killing its sandbox",
            self.logger.name.removeprefix("pyisolate.actor."),
            KILL_GRACE,
        )
        self.kill_sandbox()

    # -- watching -----------------------------------------------------------------

    async def watch(self) -> None:
        """Wait for the process to end and reap it; run as a task."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._escalate)
                await self._wait_exited()
                # Exited, not reaped: its process group number is still ours.
                self.kill_descendants()
                code = self.proc.wait()
                self.returncode = self._returncode_map(code) if self._returncode_map else code
                tg.cancel_scope.cancel()
        finally:
            if self.returncode is None:  # cancelled: never leave a zombie behind
                await self._reap_after_cancel()
            self._child.close()
            if self._actor is not None:
                self._actor.close()
            if self.cgroup is not None:
                # Reaped: whatever the actor left (daemonised children) dies now.
                self.cgroup.kill()
                self.cgroup.close()
            self._close_stdin()
            self.exited.set()

    async def _reap_after_cancel(self) -> None:
        self.kill()
        with anyio.CancelScope(shield=True):
            for last_resort in (self.kill_sandbox, None):
                with anyio.move_on_after(KILL_GRACE):
                    await self._wait_exited()
                if self._child.exited():
                    self.kill_descendants()  # not reaped yet: the group is still ours
                    break
                if last_resort is None:
                    break
                last_resort()
        code = self.proc.poll()
        if code is None:
            log.error("pyisolate: actor process %s could not be reaped", self.pid)
            code = -signal.SIGKILL
        elif self._returncode_map is not None:
            code = self._returncode_map(code)
        self.returncode = code

    async def _wait_exited(self) -> None:
        """Return once our child has ended, without reaping it."""
        if self._child.fd is not None:
            await self._child.wait()
        elif hasattr(os, "waitid"):
            pid = self.proc.pid
            await anyio.to_thread.run_sync(
                lambda: os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT), abandon_on_cancel=True
            )
        else:
            await anyio.to_thread.run_sync(self.proc.wait, abandon_on_cancel=True)

    def _close_stdin(self) -> None:
        try:
            self._stdin.close()
        except OSError:
            pass

    # Created by the first pump_output: ForkedProcess has its own __init__.
    _output: ActorOutput | None = None

    async def pump_output(self, stream_name: str) -> None:
        """Forward one of the child's output pipes to logging; run as a task.

        Bounded whatever the child writes (line length, lines per second,
        bytes per loop turn, forged records): see :mod:`._output`.
        """
        pipe = self.proc.stdout if stream_name == "stdout" else self.proc.stderr
        assert pipe is not None
        if self._output is None:  # one per actor: its two pipes share a rate limit
            self._output = ActorOutput(self.logger, self.stderr_tail)
        os.set_blocking(pipe.fileno(), False)
        try:
            await self._output.pump(pipe.fileno(), stream_name, self.exited)
        finally:
            pipe.close()

    async def output_drained(self, timeout: float = 1.0) -> None:
        """Wait (at most ``timeout`` s) until the output pumps have read to end
        of file: after an exit, :attr:`stderr_tail` then holds the last words."""
        if self._output is not None:
            await self._output.drained(timeout)


def python_command(python: str | None, pkg_root: str | None = None) -> list[str]:
    """The command that starts an actor.

    ``-c`` rather than ``-m`` skips runpy's extra work; nothing heavy is imported
    before the bootstrap is read. ``pkg_root`` makes this pyisolate importable
    even when it runs from a source tree rather than an installed copy.
    """
    prelude = f"import sys; sys.path.insert(0, {pkg_root!r}); " if pkg_root else ""
    return [
        python or sys.executable,
        "-c",
        prelude + "from pyisolate.actors._child import main; main()",
    ]
