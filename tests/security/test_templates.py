"""Templates: fds placed right whatever their numbers, one sandbox per supervised child.

Issue 8, items 8 and 9. A forked actor's channel fd may land on any number,
67 included (the template used to copy received fds to 64 and up, then
``dup2`` one onto itself and close it). Supervised siblings whose policies
are equal get a template, and so a sandbox, each, from their very first
start; a restart reuses the child's own; a template nobody needs any more is
shut down instead of idling.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import time
from typing import TYPE_CHECKING

import anyio
import pytest
from conftest import descendants, eventually

import pyisolate
from pyisolate import ActorError, ProtocolError, SpawnOptions
from pyisolate.actors._forkserver import place_fds
from pyisolate.actors._pidfd import parent_of
from pyisolate.sandbox import SandboxMode, SandboxPolicy, detect
from pyisolate.supervision import ChildSpec, Supervisor

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.anyio

PROWLER = "security.proc_actors:Prowler"
# An explicit uid: as root, the runtime would otherwise give each actor its
# own, and the siblings' policies would differ (the bug needs them equal).
EQUAL = (SandboxMode.AUTO, SandboxPolicy(uid=60001, gid=60001))


@pytest.fixture
def sandboxed() -> None:
    if detect().level != "full":
        pytest.skip(f"no full sandbox here: {detect().model}")


def _free_fds_from(low: int, count: int) -> list[int]:
    """The ``count`` lowest fd numbers >= ``low`` that are not open."""
    found: list[int] = []
    fd = low
    while len(found) < count:
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            found.append(fd)
        fd += 1
    return found


# -- item 8: the channel fd may be any number ---------------------------------------


def test_place_fds_onto_the_numbers_a_naive_copy_would_take() -> None:
    """The targets are exactly the fds that copying "to 64 and up" yields."""
    pipes = [os.pipe() for _ in range(2)]
    sources = [r for r, _w in pipes]
    keep = [w for _r, w in pipes]
    targets = tuple(_free_fds_from(64, 2))
    try:
        place_fds(sources, targets)
        for target, writer in zip(targets, keep, strict=True):
            os.write(writer, b"x")  # each target is its own pipe's read end
            assert os.read(target, 1) == b"x"
        for fd in sources:
            with pytest.raises(OSError):
                os.fstat(fd)  # the originals are closed
    finally:
        for fd in (*targets, *keep):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def _lowest_free_fd_is(number: int) -> Iterator[None]:
    """Fill every free fd below ``number`` so that the next ones opened are
    ``number``, ``number + 1``, ..."""
    fillers = []
    try:
        while True:
            fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            if fd >= number:
                os.close(fd)
                break
            fillers.append(fd)
        yield
    finally:
        for fd in fillers:
            os.close(fd)


async def test_template_spawn_with_channel_fd_67(
    rt: pyisolate.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel_fds: list[int] = []
    real_socketpair = socket.socketpair

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        pair = real_socketpair(*args, **kwargs)
        if pair[0].type == socket.SOCK_STREAM:  # the actor's side channel
            channel_fds.append(pair[1].fileno())
        return pair

    monkeypatch.setattr(socket, "socketpair", spy)
    assert _free_fds_from(66, 2) == [66, 67], "the test needs fds 66 and 67 free"
    with _lowest_free_fd_is(66):
        ref = await rt.spawn(PROWLER, options=SpawnOptions(template=True))
    assert channel_fds[0] == 67  # the condition the bug needed
    assert await ref.ping() == "pong"
    pid = rt.process_id(ref)
    assert pid is not None
    assert _ppid(pid) != os.getpid()
    await ref.stop()


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


# -- item 9: one template (one sandbox) per supervised child --------------------------


def _runs_template_code(pid: int) -> bool:
    """The template's code, not its bubblewrap launcher (whose arguments name it)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return comm != "bwrap" and b"template_main" in cmdline


def _templates() -> list[int]:
    """Our template processes (not the actors forked from them, which run
    the same command line)."""
    return sorted(
        pid
        for pid in descendants()
        if _runs_template_code(pid) and not _runs_template_code(parent_of(pid) or 0)
    )


def _siblings() -> Supervisor:
    return Supervisor(
        children=[ChildSpec("a", PROWLER, sandbox=EQUAL), ChildSpec("b", PROWLER, sandbox=EQUAL)],
        intensity=5,
        period=60,
    )


async def test_supervised_siblings_do_not_share_a_sandbox(sandboxed: None) -> None:
    with anyio.fail_after(60):
        async with pyisolate.Runtime() as rt:
            sup = await rt.supervise(_siblings())
            a, b = sup.ref("a"), sup.ref("b")
            await a.write_tmp("mark", "from a")
            # Positive control: a sees its own file, and its own processes.
            assert await a.read_tmp("mark") == "from a"
            assert await b.read_tmp("mark") is None  # not a's /tmp
            for ref in (a, b):
                # Its sandbox's init, its template and itself: nobody else.
                assert await ref.visible_pids() == await ref.own_pids()
            assert rt.process_id(a) != rt.process_id(b)
            await sup.stop()


async def test_one_template_per_child_reused_on_restart_and_shut_down(
    sandboxed: None,
) -> None:
    with anyio.fail_after(60):
        async with pyisolate.Runtime() as rt:
            before = _templates()
            sup = await rt.supervise(_siblings())
            a, b = sup.ref("a"), sup.ref("b")
            templates = sorted(set(_templates()) - set(before))
            assert len(templates) == 2  # one per child, none idle
            parents = {_ppid(rt.process_id(r)) for r in (a, b)}  # type: ignore[arg-type]
            assert parents == set(templates)
            a_template = _ppid(rt.process_id(a))  # type: ignore[arg-type]
            os.kill(rt.process_id(a), signal.SIGKILL)  # type: ignore[arg-type]
            await _until_restarted(a, rt, sup)
            # The restart forked from a's own template; no template was added.
            assert _ppid(rt.process_id(a)) == a_template  # type: ignore[arg-type]
            assert sorted(set(_templates()) - set(before)) == templates
            await sup.stop()
            await eventually(lambda: not (set(_templates()) - set(before)), timeout=10)


async def test_template_of_a_terminated_child_is_shut_down(sandboxed: None) -> None:
    with anyio.fail_after(60):
        async with pyisolate.Runtime() as rt:
            before = set(_templates())
            sup = await rt.supervise(_siblings())
            b_template = _ppid(rt.process_id(sup.ref("b")))  # type: ignore[arg-type]
            await sup.terminate_child("a")
            await eventually(lambda: set(_templates()) - before == {b_template}, timeout=10)
            assert await sup.ref("b").ping() == "pong"  # its sibling's is untouched
            await sup.restart_child("a")  # a new template of its own
            assert await sup.ref("a").ping() == "pong"
            assert len(set(_templates()) - before) == 2
            await sup.stop()


async def _until_restarted(ref: object, rt: pyisolate.Runtime, sup: object) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            if await ref.ping(timeout=2) == "pong" and sup.stats.restarts >= 1:  # type: ignore[attr-defined]
                return
        except (ActorError, ProtocolError, TimeoutError):
            pass
        assert time.monotonic() < deadline, "not restarted within 20 s"
        await anyio.sleep(0.05)
