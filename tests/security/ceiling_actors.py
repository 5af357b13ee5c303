"""Actors for the resource-ceiling battery (tests/security/test_ceilings.py).

Each method plays one hostile move from inside the actor and reports what the
kernel said (the errno's name) instead of raising, so a test compares the
move past a ceiling with the same move under it. Imported by actor processes
as ``security.ceiling_actors``: standard library and pyisolate only.
"""

from __future__ import annotations

import errno
import os
import subprocess
from typing import Any

import pyisolate

_CHUNK = 1 << 20


def _errname(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "?")


class Ceilings(pyisolate.Actor):
    """Fills tmpfs, forks, daemonises: what a runaway or hostile plugin does."""

    def __init__(self) -> None:
        self._children: list[subprocess.Popen[bytes]] = []

    def tmpfs_size(self, path: str) -> int:
        """The size of the filesystem at ``path`` in bytes."""
        st = os.statvfs(path)
        return st.f_blocks * st.f_frsize

    def fill(self, path: str, nbytes: int) -> dict[str, Any]:
        """Write ``nbytes`` to the file ``path`` (1 MiB at a time) and keep it."""
        written, error = 0, "none"
        chunk = b"\xa5" * _CHUNK
        try:
            with open(path, "wb") as fh:
                while written < nbytes:
                    n = fh.write(chunk[: min(_CHUNK, nbytes - written)])
                    fh.flush()
                    written += n
        except OSError as exc:
            error = _errname(exc)
        return {"written": written, "error": error}

    def remove(self, path: str) -> None:
        os.unlink(path)

    def spawn_sleepers(self, count: int, marker: str) -> dict[str, Any]:
        """Start up to ``count`` ``sleep <marker>`` processes and leave them
        running (unreaped) until the kernel refuses one."""
        error = "none"
        for _ in range(count):
            try:
                self._children.append(subprocess.Popen(["sleep", marker], stdin=subprocess.DEVNULL))
            except OSError as exc:
                error = _errname(exc)
                break
        return {"started": len(self._children), "error": error}

    def daemonize(self, marker: str) -> str:
        """Leave a grandchild behind in a session of its own, reparented away
        from the actor (what a daemon, or an escaping plugin, does)."""
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.setsid()
                if os.fork() == 0:
                    os.execvp("sleep", ["sleep", marker])
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        return "ok"

    def allocate(self, nbytes: int) -> int:
        """Hold ``nbytes`` of touched memory (a non-zero fill: every page is real)."""
        self._held = b"\x01" * nbytes
        return len(self._held)

    def echo(self, value: Any) -> Any:
        return value
