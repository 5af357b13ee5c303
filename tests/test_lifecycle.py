"""Deaths, kills, timeouts, cancellation, hooks, logging, directories, orphans."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import anyio
import pytest
from actors import Counter, Hooks, Sleepy, Talker
from conftest import TESTS_DIR, eventually, pid_gone

import pyisolate
from pyisolate import ActorClosedError, ActorDiedError
from pyisolate.actors._rundir import RuntimeDir, sweep_stale
from pyisolate.sandbox import SandboxMode

pytestmark = pytest.mark.anyio


async def _stats(ref: pyisolate.ActorRef, key: str) -> int:
    return int((await ref.stats())[key])


# -- deaths -----------------------------------------------------------------------


async def test_crash_mid_call(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Sleepy)
    other = await rt.spawn(Counter)
    start = time.monotonic()
    with pytest.raises(ActorDiedError) as info:
        await ref.crash(3)
    assert time.monotonic() - start < 5.0
    assert info.value.exitcode == 3
    assert "3" in str(info.value)
    assert info.value.actor == ref.name
    with pytest.raises(ActorDiedError) as later:
        await ref.ping()
    assert later.value.exitcode == 3
    assert rt.process_id(ref) is None
    assert await other.inc() == 1
    await ref.stop()  # stopping a dead actor is harmless
    await other.stop()


async def test_sigkill_mid_call(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Sleepy)
    pid = rt.process_id(ref)
    assert pid is not None

    async def kill_soon() -> None:
        await anyio.sleep(0.3)
        os.kill(pid, signal.SIGKILL)

    async with anyio.create_task_group() as tg:
        tg.start_soon(kill_soon)
        with pytest.raises(ActorDiedError, match="SIGKILL") as info:
            await ref.hang()
    assert info.value.exitcode == -signal.SIGKILL
    with pytest.raises(ActorDiedError, match="SIGKILL"):
        await ref.ping()
    with pytest.raises(ActorDiedError):
        ref.stream("anything")


async def test_pending_calls_all_fail_on_death(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Sleepy)
    errors: list[BaseException] = []

    async def waiter() -> None:
        try:
            await ref.hang()
        except ActorDiedError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(waiter)
        await eventually(lambda: _stats_equal(ref, "started", 5))
        ref.kill()
    assert len(errors) == 5
    assert rt.calls.pending_count() == 0


async def _stats_equal(ref: pyisolate.ActorRef, key: str, value: int) -> bool:
    return await _stats(ref, key) == value


async def test_kill(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Counter)
    pid = rt.process_id(ref)
    assert pid is not None
    ref.kill()
    await eventually(lambda: rt.process_id(ref) is None)
    assert pid_gone(pid)
    with pytest.raises(ActorDiedError, match="SIGKILL"):
        await ref.inc()


# -- timeouts and cancellation --------------------------------------------------


async def test_timeout_cancels_remote_method(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Sleepy)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        await ref.hang.call(timeout=0.3)
    assert 0.25 <= time.monotonic() - start < 3.0
    await eventually(lambda: _stats_equal(ref, "cancelled", 1))
    assert await ref.ping() == "pong"
    with pytest.raises(TimeoutError):
        await ref.call("hang", timeout=0.1)
    await eventually(lambda: _stats_equal(ref, "cancelled", 2))
    assert rt.calls.pending_count() == 0
    await ref.stop()


async def test_default_call_timeout(rt: pyisolate.Runtime) -> None:
    from pyisolate import SpawnOptions

    ref = await rt.spawn(Sleepy, options=SpawnOptions(call_timeout=0.2))
    with pytest.raises(TimeoutError):
        await ref.hang()
    await eventually(lambda: _stats_equal(ref, "cancelled", 1))
    await ref.stop()


async def test_cancelling_caller_cancels_remote_method(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Sleepy)
    with anyio.move_on_after(0.3) as scope:
        await ref.hang()
    assert scope.cancelled_caught
    await eventually(lambda: _stats_equal(ref, "cancelled", 1))

    async with anyio.create_task_group() as tg:
        tg.start_soon(ref.hang)
        await eventually(lambda: _stats_equal(ref, "started", 2))
        tg.cancel_scope.cancel()
    await eventually(lambda: _stats_equal(ref, "cancelled", 2))
    assert await ref.ping() == "pong"
    await ref.stop()


# -- hooks and stopping -------------------------------------------------------------


async def test_hooks(rt: pyisolate.Runtime, tmp_path: Path) -> None:
    marker = tmp_path / "stopped.txt"
    # Unsandboxed: a sandbox's private /tmp would hide the marker from the host.
    ref = await rt.spawn(Hooks, str(marker), name="hooked", sandbox=SandboxMode.DISABLED)
    assert await ref.is_started() is True  # on_start ran before spawn returned
    assert await ref.my_name() == "hooked"
    assert not marker.exists()
    await ref.stop()
    assert marker.read_text() == "stopped hooked"
    assert rt.process_id(ref) is None
    with pytest.raises(ActorClosedError):
        await ref.is_started()


async def test_runtime_exit_runs_on_stop(tmp_path: Path) -> None:
    marker = tmp_path / "stopped.txt"
    async with pyisolate.Runtime(sandbox=SandboxMode.DISABLED) as rt:
        await rt.spawn(Hooks, str(marker), name="h")
    assert marker.read_text() == "stopped h"


async def test_stop_timeout_kills_a_hanging_on_stop(rt: pyisolate.Runtime, tmp_path: Path) -> None:
    marker = tmp_path / "never.txt"
    ref = await rt.spawn(Hooks, str(marker), "stop_hangs", sandbox=SandboxMode.DISABLED)
    pid = rt.process_id(ref)
    assert pid is not None
    start = time.monotonic()
    await ref.stop(timeout=0.5)
    elapsed = time.monotonic() - start
    assert 0.45 <= elapsed < 3.0
    assert pid_gone(pid)
    assert not marker.exists()
    with pytest.raises(ActorClosedError):
        await ref.is_started()


async def test_stop_twice_and_concurrently(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Counter)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ref.stop)
        tg.start_soon(ref.stop)
    await ref.stop()


# -- logging ----------------------------------------------------------------------


async def test_actor_output_reaches_host_logging(
    rt: pyisolate.Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pyisolate.actor")
    ref = await rt.spawn(Talker, name="talker")
    await ref.talk("hi")
    logger = "pyisolate.actor.talker"

    def seen() -> bool:
        messages = [r.getMessage() for r in caplog.records if r.name == logger]
        return (
            any("stdout says hi" in m for m in messages)
            and any("log says hi" in m for m in messages)
            and any("info says hi" in m for m in messages)
        )

    await eventually(seen)
    records = [r for r in caplog.records if r.name == logger]
    logged = next(r for r in records if "log says hi" in r.getMessage())
    assert logged.levelno == logging.WARNING
    assert "talker.inner" in logged.getMessage()
    await ref.stop()


async def test_actor_log_level_follows_host(
    rt: pyisolate.Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pyisolate.actor")
    ref = await rt.spawn(Talker, name="quiet")
    await ref.talk("x")
    await eventually(lambda: any("log says x" in r.getMessage() for r in caplog.records))
    assert not any("info says x" in r.getMessage() for r in caplog.records)
    await ref.stop()


# -- runtime directories and orphans -------------------------------------------------


def test_sweep_stale(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import os, sys
        from pathlib import Path
        from pyisolate.actors._rundir import RuntimeDir
        d = RuntimeDir(Path(sys.argv[1]))
        print(d.path, flush=True)
        if sys.argv[2] == "die":
            os._exit(0)
        sys.stdin.read()
        d.close()
        """
    )
    dead = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), "die"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    dead_dir = Path(dead.stdout.strip())
    assert dead_dir.is_dir()
    with subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path), "live"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as live:
        assert live.stdout is not None
        live_dir = Path(live.stdout.readline().strip())
        mine = RuntimeDir(tmp_path)
        try:
            removed = sweep_stale(tmp_path)
            assert removed == [dead_dir]
            assert not dead_dir.exists()
            assert live_dir.is_dir()
            assert mine.path.is_dir()
        finally:
            mine.close()
            live.communicate("", timeout=30)
    assert not live_dir.exists()
    assert sweep_stale(tmp_path) == []


def test_no_orphans_when_host_is_killed() -> None:
    # Not tmp_path: the runtime's socket path must stay under 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="o"))
    try:
        _no_orphans(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _no_orphans(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys, anyio
        sys.path.insert(0, {str(TESTS_DIR)!r})
        import pyisolate

        async def main():
            async with pyisolate.Runtime() as rt:
                a = await rt.spawn("actors:Counter")
                b = await rt.spawn("actors:Sleepy")
                print(rt.process_id(a), rt.process_id(b), flush=True)
                await anyio.sleep(60)

        anyio.run(main)
        """
    )
    env = dict(os.environ, PYISOLATE_RUNTIME_DIR=str(tmp_path))
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    ) as host:
        assert host.stdout is not None
        line = host.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2, line
        assert not any(pid_gone(p) for p in pids)
        host.send_signal(signal.SIGKILL)
        host.wait(timeout=10)
        deadline = time.monotonic() + 2.0
        while not all(pid_gone(p) for p in pids):
            assert time.monotonic() < deadline, f"actors {pids} outlived their host"
            time.sleep(0.02)
    # The killed host could not remove its directory; the next runtime sweeps it.
    assert len(sweep_stale(tmp_path)) == 1
    assert not any(p.name.startswith("pyisolate-") for p in tmp_path.iterdir())
