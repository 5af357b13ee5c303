"""An actor's OS process as the host sees it: start, output, exit, kill.

The exit is noticed at once, without polling: on Linux through a pidfd (a file
descriptor that becomes readable when the process ends) that the event loop
waits on; elsewhere a thread waits. The child's stdout and stderr are read
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
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from ._bootstrap import write_bootstrap
from ._output import ActorOutput

__all__ = ["ActorProcess", "describe_exit"]

_TAIL_LINES = 60


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
        self.pid = self.proc.pid
        # The actor's own pid when it differs (sandboxed: bwrap is our child).
        self.actor_pid: int | None = None
        self._returncode_map = returncode_map
        assert self.proc.stdin is not None
        # The write end stays open: it is the child's lifeline (see _child).
        self._stdin = self.proc.stdin
        write_bootstrap(self._stdin.fileno(), bootstrap)
        self.exited = anyio.Event()
        self.returncode: int | None = None

    def kill(self) -> None:
        """SIGKILL the actor.

        Under bubblewrap we kill the actor (or the sandbox's init), never the
        launcher itself: the launcher then exits and we reap it, and the init
        reaps everything inside. Killing the launcher first would orphan the
        init to the host's pid 1, which in a container may never reap it.
        """
        if self.returncode is not None:
            return
        if self.cgroup is not None:
            self.cgroup.kill()  # the whole tree at once; the signals below are then moot
        targets = [self.actor_pid] if self.actor_pid else _children(self.pid) or [self.pid]
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill_launcher(self) -> None:
        """Last resort when :meth:`kill` did not end the process tree."""
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def watch(self) -> None:
        """Wait for the process to end and reap it; run as a task."""
        try:
            pidfd = os.pidfd_open(self.pid) if hasattr(os, "pidfd_open") else None
        except OSError:
            pidfd = None
        try:
            if pidfd is not None:
                await anyio.wait_readable(pidfd)
                code = self.proc.wait()
            else:
                code = await anyio.to_thread.run_sync(self.proc.wait, abandon_on_cancel=True)
            self.returncode = self._returncode_map(code) if self._returncode_map else code
        finally:
            if self.returncode is None:  # cancelled: never leave a zombie behind
                self.kill()
                self.returncode = self.proc.wait()
            if pidfd is not None:
                os.close(pidfd)
            if self.cgroup is not None:
                # Reaped: whatever the actor left (daemonised children) dies now.
                self.cgroup.kill()
                self.cgroup.close()
            self._close_stdin()
            self.exited.set()

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
