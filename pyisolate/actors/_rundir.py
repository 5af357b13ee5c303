"""The runtime's private directory, and sweeping those that dead runtimes left.

Each Runtime owns one directory (mode 0700) for its sockets and fallback
files. It holds an exclusive ``flock`` on a file inside for as long as it
lives; the kernel drops the lock when the process dies, however it dies. A new
runtime removes every directory of ours whose lock it can take: that runtime is
gone. A live runtime's directory is never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..environment import RUNTIME_DIR

__all__ = ["PREFIX", "RuntimeDir", "base_dir", "sweep_stale"]

PREFIX = "pyisolate-"
_LOCK = "lock"
# A directory this young may belong to a runtime that is between mkdtemp and
# flock; leave it to the next sweep.
_GRACE_SECONDS = 30.0


def base_dir() -> Path:
    """Where runtime directories go: ``$PYISOLATE_RUNTIME_DIR``, else the temp dir.

    (Not ``$XDG_RUNTIME_DIR``: ipc socket paths must stay under 108 bytes, and
    the temp dir is short and always writable.)
    """
    return Path(os.environ.get(RUNTIME_DIR) or tempfile.gettempdir())


class RuntimeDir:
    """A private directory, locked while open, removed on close."""

    def __init__(self, base: Path | None = None) -> None:
        base = base or base_dir()
        base.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))
        os.chmod(self.path, 0o700)
        self._lock_fd: int | None = os.open(
            self.path / _LOCK, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600
        )
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def sweep_stale(base: Path | None = None) -> list[Path]:
    """Remove runtime directories whose owner is dead; return what was removed."""
    base = base or base_dir()
    removed: list[Path] = []
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return removed
    uid = os.getuid()
    now = time.time()
    for path in candidates:
        try:
            st = path.lstat()
            if not path.is_dir() or path.is_symlink() or st.st_uid != uid:
                continue
            lock_path = path / _LOCK
            if not lock_path.exists():
                if now - st.st_mtime > _GRACE_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
                continue
            fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        finally:
            os.close(fd)
    return removed
