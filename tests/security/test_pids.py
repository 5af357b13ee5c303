"""The host signals only processes it owns, sees every death, and stops in bounded time.

Issue 8, items 4 and 12. A template-forked actor that freezes its template
(SIGSTOP) and exits must be seen dead, its template taken for dead with its
other actors, the supervisor must restart it, and the host must never signal
a pid it does not own (the template's numbering names arbitrary host
processes). An unsandboxed actor's children die with it: on stop, on the
Runtime's exit, and when it is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import TYPE_CHECKING

import anyio
import pytest
from conftest import descendants, eventually, pid_gone

import pyisolate
from pyisolate import ActorDiedError, ActorError, ProtocolError, SpawnOptions
from pyisolate.sandbox import SandboxMode, detect
from pyisolate.supervision import ChildSpec, Supervisor

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.anyio

PROWLER = "security.proc_actors:Prowler"
FORKED = SpawnOptions(template=True)


@pytest.fixture
def sandboxed() -> None:
    if detect().level != "full":
        pytest.skip(f"no full sandbox here: {detect().model}")


@pytest.fixture
def signals_checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail on any signal the host sends by number to a process that is not
    its own descendant (what ``os.kill(<a sandbox's pid>)`` did)."""
    foreign: list[str] = []
    real_kill, real_killpg = os.kill, os.killpg

    def check(what: str, pid: int) -> None:
        if pid != os.getpid() and pid not in descendants():
            foreign.append(f"{what}({pid})")

    def kill(pid: int, sig: int) -> None:
        check("kill", pid)
        real_kill(pid, sig)

    def killpg(pgid: int, sig: int) -> None:
        check("killpg", pgid)
        real_killpg(pgid, sig)

    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setattr(os, "killpg", killpg)
    yield foreign
    assert foreign == [], f"the host signalled processes it does not own: {foreign}"


async def _until_dead(ref: object, timeout: float) -> BaseException:
    """Ping until the call fails as on a dead actor; that error. (A forked
    actor whose template says nothing is cut off as disconnected before its
    death is confirmed: ProtocolError.)"""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await ref.ping()  # type: ignore[attr-defined]
        except (ActorDiedError, ProtocolError) as exc:
            return exc
        assert time.monotonic() < deadline, f"still alive after {timeout} s"
        await anyio.sleep(0.05)


async def _until_answers(ref: object, timeout: float) -> str:
    """Ping until a call succeeds (a supervised actor being restarted)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return str(await ref.ping(timeout=2))  # type: ignore[attr-defined]
        except (ActorError, ProtocolError, TimeoutError):
            assert time.monotonic() < deadline, f"no answer within {timeout} s"
            await anyio.sleep(0.05)


def _ns_pids(pid: int) -> list[int]:
    """``pid`` as each pid namespace numbers it, outermost first."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return [int(p) for p in line.split()[1:]]
    return [pid]


# -- item 4: pids the host does not own ----------------------------------------------


async def test_process_id_of_a_forked_actor_is_the_host_pid(
    sandboxed: None, rt: pyisolate.Runtime
) -> None:
    ref = await rt.spawn(PROWLER, options=FORKED)
    pid = rt.process_id(ref)
    assert pid is not None
    assert pid in descendants()
    numbers = _ns_pids(pid)
    assert len(numbers) > 1
    assert numbers[0] == pid
    assert await ref.parent_pid() != _ns_pids(pid)[0]
    await ref.stop()
    assert rt.process_id(ref) is None


async def test_actor_that_freezes_its_template_and_exits_is_seen_dead(
    sandboxed: None, signals_checked: list[str]
) -> None:
    with anyio.fail_after(40):  # the Runtime's exit included: nothing waits forever
        async with pyisolate.Runtime() as rt:
            hostile = await rt.spawn(PROWLER, options=FORKED)
            sibling = await rt.spawn(PROWLER, options=FORKED)  # shares the template
            sibling_pid = rt.process_id(sibling)
            assert await sibling.ping() == "pong"
            with pytest.raises((ActorError, ProtocolError)):  # it died mid-call
                await hostile.stop_parent_and_exit()
            # The template answers nothing now: it is declared dead, and its
            # other actor with it; the sandbox is gone.
            await _until_dead(sibling, timeout=15)
            assert sibling_pid is not None
            await eventually(lambda: pid_gone(sibling_pid), timeout=5)
            # Positive control: a new forked actor gets a new, working template.
            fresh = await rt.spawn(PROWLER, options=FORKED)
            assert await fresh.ping() == "pong"


async def test_stop_is_bounded_when_the_template_is_frozen(
    sandboxed: None, signals_checked: list[str]
) -> None:
    with anyio.fail_after(40):
        async with pyisolate.Runtime() as rt:
            control = await rt.spawn(PROWLER, options=FORKED)
            start = time.monotonic()
            await control.stop()  # positive control: the template reports at once
            assert time.monotonic() - start < 2
            frozen = await rt.spawn(PROWLER, options=FORKED)
            pid = rt.process_id(frozen)
            await frozen.stop_parent()
            start = time.monotonic()
            await frozen.stop(timeout=1)
            assert time.monotonic() - start < 15
            assert pid is not None
            assert pid_gone(pid)


async def test_supervisor_sees_the_death_behind_a_frozen_template(
    sandboxed: None, signals_checked: list[str]
) -> None:
    spec = Supervisor(children=[ChildSpec("p", PROWLER)], intensity=5, period=60)
    with anyio.fail_after(40):
        async with pyisolate.Runtime() as rt:
            sup = await rt.supervise(spec)
            ref = sup.ref("p")
            first = rt.process_id(ref)
            with pytest.raises((ActorError, ProtocolError)):
                await ref.stop_parent_and_exit()
            # The supervisor restarts it (from a new template): calls work again.
            assert await _until_answers(ref, timeout=20) == "pong"
            assert sup.stats.restarts == 1
            assert rt.process_id(ref) not in (None, first)
            await sup.stop()


async def test_kill_of_a_frozen_templates_actor_is_bounded(
    sandboxed: None, signals_checked: list[str]
) -> None:
    with anyio.fail_after(40):
        async with pyisolate.Runtime() as rt:
            ref = await rt.spawn(PROWLER, options=FORKED)
            pid = rt.process_id(ref)
            await ref.stop_parent()
            rt.kill_actor(ref.id)
            await _until_dead(ref, timeout=15)
            assert pid is not None
            await eventually(lambda: pid_gone(pid), timeout=5)


def test_adopted_pids_must_descend_from_our_process() -> None:
    """A pid from credentials is accepted only inside the launcher's tree."""
    from pyisolate.actors._pidfd import ProcessHandle

    launcher = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        inner = eventually_sync(lambda: _children(launcher.pid))
        handle = ProcessHandle.adopt(inner[0], launcher.pid, include_self=False)
        assert handle is not None  # positive control: the launcher's child
        handle.close()
        assert ProcessHandle.adopt(os.getpid(), launcher.pid) is None  # the host itself
        assert ProcessHandle.adopt(1, launcher.pid) is None
        assert ProcessHandle.adopt(launcher.pid, launcher.pid, include_self=False) is None
    finally:
        launcher.kill()
        launcher.wait()
        for pid in inner:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def eventually_sync(check, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.02)
    return value


# -- item 12: an unsandboxed actor's children die with it ---------------------------


def _sleepers_of(pid: int | None) -> list[int]:
    assert pid is not None
    return [p for p in descendants(pid) if _comm(p) == "sleep"]


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


async def _actor_with_sleeper(rt: pyisolate.Runtime, options: SpawnOptions) -> tuple[object, int]:
    ref = await rt.spawn(PROWLER, options=options)
    reported = await ref.start_sleeper()
    sleepers = _sleepers_of(rt.process_id(ref))
    # Positive control: the grandchild runs, below the actor.
    assert sleepers == [reported]
    assert not pid_gone(reported)
    return ref, reported


@pytest.mark.parametrize("options", [SpawnOptions(), FORKED], ids=["cold", "forked"])
async def test_unsandboxed_grandchild_dies_on_stop(options: SpawnOptions) -> None:
    async with pyisolate.Runtime(sandbox=SandboxMode.DISABLED) as rt:
        ref, sleeper = await _actor_with_sleeper(rt, options)
        await ref.stop()  # type: ignore[attr-defined]
        await eventually(lambda: pid_gone(sleeper), timeout=5)


@pytest.mark.parametrize("options", [SpawnOptions(), FORKED], ids=["cold", "forked"])
async def test_unsandboxed_grandchild_dies_with_the_runtime(options: SpawnOptions) -> None:
    async with pyisolate.Runtime(sandbox=SandboxMode.DISABLED) as rt:
        _ref, sleeper = await _actor_with_sleeper(rt, options)
    await eventually(lambda: pid_gone(sleeper), timeout=5)


@pytest.mark.parametrize("options", [SpawnOptions(), FORKED], ids=["cold", "forked"])
async def test_unsandboxed_grandchild_dies_when_the_actor_is_killed(
    options: SpawnOptions,
) -> None:
    async with pyisolate.Runtime(sandbox=SandboxMode.DISABLED) as rt:
        ref, sleeper = await _actor_with_sleeper(rt, options)
        pid = rt.process_id(ref)  # type: ignore[arg-type]
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await _until_dead(ref, timeout=5)
        await eventually(lambda: pid_gone(sleeper), timeout=5)


async def test_closing_a_frozen_template_does_not_block_the_loop(sandboxed: None) -> None:
    """The runtime's exit waits for a template that ignores its lifeline
    without blocking the event loop, then kills it."""
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await anyio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        with anyio.fail_after(30):
            async with pyisolate.Runtime() as rt:
                ref = await rt.spawn(PROWLER, options=FORKED)
                await ref.stop()
                (template,) = rt._forks._pool.templates.values()  # type: ignore[union-attr]
                template_pid = template.template_pid  # the kernel's number, not the sandbox's
                assert template_pid in descendants()
                os.kill(template_pid, signal.SIGSTOP)  # idle, and frozen
                gaps.clear()
                start = time.monotonic()
        elapsed = time.monotonic() - start
        tg.cancel_scope.cancel()
    assert pid_gone(template_pid)
    assert elapsed > 1  # it did wait for the template (then killed it)...
    assert max(gaps) < 0.5  # ...with the loop running all along
