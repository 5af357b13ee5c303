"""Signalling processes without hitting someone else's: pidfds, and whose pid.

The host signals only processes it can vouch for:

* its own ``Popen`` children (a sandbox launcher, a template, an unsandboxed
  actor): their pid cannot be reused while they are unreaped, and only the
  host reaps them;
* pids the kernel translated for it (SCM_CREDENTIALS on a socket) whose
  process descends from one of the former, checked when the pid is learned.

Never a pid an actor reported in a message, and never one numbered inside a
sandbox's pid namespace (the template's view of its children): those name
arbitrary host processes. Each accepted process is pinned at once by a pidfd
(``os.pidfd_open``): a signal sent through it (``signal.pidfd_send_signal``)
reaches that process or nobody, even after its number is reused, and the
pidfd becomes readable when the process ends, which is how the host sees the
death of a process that is not its child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal

import anyio

__all__ = ["ProcessHandle", "in_new_pid_namespace", "parent_of"]

log = logging.getLogger("pyisolate.runtime")

_HAVE_PIDFD = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")
_MAX_DEPTH = 64  # bwrap, its init, an exec chain: a few levels, never this many


def parent_of(pid: int) -> int | None:
    """``pid``'s parent as this host numbers it, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        return int(stat[stat.rfind(")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def in_new_pid_namespace(pid: int, parent: int) -> bool:
    """True when ``pid`` runs in another pid namespace than ``parent`` (it is
    the init of a sandbox that ``parent``, a bubblewrap launcher, created)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") != os.readlink(f"/proc/{parent}/ns/pid")
    except OSError:
        return False


def _descends(pid: int, ancestor: int, *, include_self: bool) -> bool:
    if pid == ancestor:
        return include_self
    current: int | None = pid
    for _ in range(_MAX_DEPTH):
        current = parent_of(current) if current is not None else None
        if current is None or current <= 1:
            return False
        if current == ancestor:
            return True
    return False


class ProcessHandle:
    """One process the host may signal and watch (see the module docstring).

    ``fd`` is its pidfd, or None where the kernel or Python has none (then
    signals go by number: safe for the host's own unreaped children only).
    """

    def __init__(self, pid: int, fd: int | None, ancestor: int | None = None) -> None:
        self.pid = pid
        self.fd = fd
        # Without a pidfd, an adopted process is signalled by number: its
        # ancestry is checked again each time, to narrow the reuse race.
        self._ancestor = ancestor
        self._closed = False

    def __repr__(self) -> str:
        return f"<ProcessHandle pid={self.pid} fd={self.fd}>"

    @classmethod
    def of_child(cls, pid: int) -> ProcessHandle:
        """The host's own child, just started (unreaped: race-free)."""
        fd = None
        if _HAVE_PIDFD:
            with contextlib.suppress(OSError):
                fd = os.pidfd_open(pid)
        return cls(pid, fd)

    @classmethod
    def adopt(cls, pid: int, ancestor: int, *, include_self: bool = True) -> ProcessHandle | None:
        """A pid the kernel translated for the host, accepted only if its
        process descends from ``ancestor`` (a process the host vouches for).

        The pidfd is opened first and the ancestry read after, so the check
        is about the pidfd's process unless that one ended meanwhile (then
        its number may have been reused, but a signal through its pidfd goes
        nowhere, and its readable pidfd is a death to report). None: refused
        (not a descendant, ended before it could be pinned, or unreadable).
        """
        if pid <= 1:
            return None
        fd = None
        if _HAVE_PIDFD:
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                return None
        if not _descends(pid, ancestor, include_self=include_self):
            if fd is not None:
                os.close(fd)
            return None
        return cls(pid, fd, None if fd is not None else ancestor)

    def exited(self) -> bool:
        """True once the process has ended (a zombie counts). Without a
        pidfd: whether the number is gone (or a zombie)."""
        if self._closed:
            return True
        if self.fd is not None:
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            return bool(poller.poll(0))
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            return True
        return stat[stat.rfind(")") + 2 :].split()[0] in ("Z", "X")

    def send(self, sig: int = signal.SIGKILL) -> bool:
        """Signal the process; False if it has ended already."""
        if self._closed:
            return False
        if self._ancestor is not None and not _descends(
            self.pid, self._ancestor, include_self=True
        ):
            return False
        try:
            if self.fd is not None:
                signal.pidfd_send_signal(self.fd, sig)
            else:
                os.kill(self.pid, sig)
        except (ProcessLookupError, OSError):
            return False
        return True

    def kill_group(self, *, leader_unreaped: bool = False) -> None:
        """SIGKILL the process group this process leads (its pgid is its pid:
        it started a session). Safe while the leader is alive, or is the
        host's own child that the host has not reaped yet (``leader_unreaped``):
        either way the number cannot have been reused."""
        if self._closed or (not leader_unreaped and self.exited()):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            os.killpg(self.pid, signal.SIGKILL)

    async def wait(self) -> None:
        """Return once the process has ended (requires a pidfd)."""
        assert self.fd is not None
        await anyio.wait_readable(self.fd)

    def close(self) -> None:
        """Close the pidfd (only once no task waits on it); the handle then
        signals nothing."""
        self._closed = True
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
