"""Shared fixtures: both anyio backends, a runtime per test, and a leak checker.

The leak checker (autouse) fails a test that leaves behind a child process, an
open file descriptor, a runtime directory or a /dev/shm entry. Actors exit
asynchronously, so it gives things a few seconds to settle first.

The session runs with a private temporary directory (``TMPDIR`` and
``tempfile.tempdir``) so that runtime directories of other test sessions
running on the same machine at the same time are not mistaken for ours.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

_REAL_TMP = tempfile.gettempdir()
_SESSION_TMP = tempfile.mkdtemp(prefix="pyi-tests-", dir=_REAL_TMP)
# Like /tmp itself: actors that run under another uid (a sandbox, when the host
# is root) can traverse it.
os.chmod(_SESSION_TMP, 0o1777)
os.environ["TMPDIR"] = _SESSION_TMP
tempfile.tempdir = _SESSION_TMP

SETTLE_SECONDS = 3.0
TESTS_DIR = Path(__file__).resolve().parent

# Actor processes import ``actors`` (tests/actors.py) through the host's sys.path.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)


# -- backends and runtime ---------------------------------------------------------


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def rt() -> AsyncIterator[object]:
    """A fresh Runtime for one test (spawning dominates the cost, not this)."""
    import pyisolate

    async with pyisolate.Runtime() as runtime:
        yield runtime


# -- leak checking ----------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) for every process we can see."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        table[int(entry.name)] = (int(rest[1]), rest[0])
    return table


def descendants(root: int | None = None) -> dict[int, str]:
    """pid -> state of every descendant of ``root`` (default: this process)."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    table = _proc_table()
    for pid, (ppid, _state) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = table[child][1]
                todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def _open_fds() -> set[tuple[int, str]]:
    fds: set[tuple[int, str]] = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            fds.add((int(name), os.readlink(f"/proc/self/fd/{name}")))
        except OSError:
            continue  # the directory listing's own descriptor
    return fds


def _runtime_dirs() -> set[str]:
    from pyisolate.actors._rundir import PREFIX, base_dir

    found: set[str] = set()
    for base in {tempfile.gettempdir(), str(base_dir())}:
        with contextlib.suppress(OSError):
            found |= {str(p) for p in Path(base).iterdir() if p.name.startswith(PREFIX)}
    return found


def _shm() -> set[str]:
    # Other programs' multiprocessing semaphores come and go on a shared machine;
    # pyisolate names nothing in /dev/shm (it uses memfd), so they are not ours.
    with contextlib.suppress(OSError):
        return {n for n in os.listdir("/dev/shm") if not n.startswith("sem.mp-")}
    return set()


class _Snapshot:
    def __init__(self) -> None:
        self.children = set(descendants())
        self.fds = _open_fds()
        self.dirs = _runtime_dirs()
        self.shm = _shm()

    def leaks(self) -> list[str]:
        problems = []
        for pid, state in descendants().items():
            if pid not in self.children:
                problems.append(f"child process {pid} ({state}): {_cmdline(pid)}")
        for fd, target in sorted(_open_fds() - self.fds):
            problems.append(f"file descriptor {fd} -> {target}")
        for path in sorted(_runtime_dirs() - self.dirs):
            problems.append(f"runtime directory {path}")
        for name in sorted(_shm() - self.shm):
            problems.append(f"/dev/shm entry {name}")
        return problems

    def clean_up(self) -> None:
        """Kill leaked processes and remove leaked directories so that one leak
        does not fail the tests after it too."""
        for pid in descendants():
            if pid not in self.children:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    os.waitpid(pid, os.WNOHANG)
        for path in _runtime_dirs() - self.dirs:
            shutil.rmtree(path, ignore_errors=True)


def _warm_up() -> None:
    """Run a tiny runtime once on each backend, and the blocking facade.

    Some libraries open a descriptor for good the first time they are used
    (pyzmq's zero-copy garbage collector, a thread pool's wakeup machinery); doing it here keeps such one-time descriptors out of the first
    test's leak check.
    """
    import anyio

    import pyisolate

    async def tiny() -> None:
        async with pyisolate.Runtime() as runtime:
            ref = await runtime.spawn("actors:Counter", 1)
            await ref.inc(1)
            await ref.value()
            # A large message is sent zero-copy: pyzmq then starts its garbage
            # collector thread (its own zmq context) for good. (A str: large
            # bytes would go out of band, leaving the envelope small.)
            await ref.echo("x" * 100_000)
            _ = [x async for x in ref.count(2)]
            await ref.stop()

    for backend in ("asyncio", "trio"):
        anyio.run(tiny, backend=backend)
    with pyisolate.Runtime.blocking() as brt:
        bref = brt.spawn("actors:Counter")
        bref.inc(1)
        bref.stop()


@pytest.fixture(scope="session")
def _warm() -> None:
    _warm_up()


@pytest.fixture(autouse=True)
def leak_check(_warm: None) -> Iterator[None]:
    """Fail a test that leaves a process, fd, runtime directory or shm entry."""
    snapshot = _Snapshot()
    yield
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        problems = snapshot.leaks()
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if problems:
        snapshot.clean_up()
        pytest.fail("test leaked:\n  " + "\n  ".join(problems), pytrace=False)


# -- helpers ----------------------------------------------------------------------


async def eventually(check, timeout: float = 5.0, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """Await ``check()`` (sync or async) until it returns a truthy value."""
    import inspect

    import anyio

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        await anyio.sleep(interval)


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :].split()[0] in ("Z", "X")
