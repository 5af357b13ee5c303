"""Limits that tell the truth: every call answered, sizes refused before
sending, the host's file descriptors never exhausted, clear messages."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import pyisolate
from pyisolate import ActorStartError, Limits, MessageTooLargeError
from security.channel_actors import Awkward, ExitsInInit, Victim

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


# -- every call is answered (item 7) ----------------------------------------------


async def test_unencodable_results_are_answered(rt: pyisolate.Runtime) -> None:
    actor = await rt.spawn(Awkward)
    with anyio.fail_after(10):
        with pytest.raises(TypeError, match=r"(?i)64|range"):
            await actor.huge_int()
        with pytest.raises(TypeError, match="the encoder broke"):
            await actor.broken()
        items: list[object] = []
        with pytest.raises(TypeError, match="cannot send the stream item"):
            async for item in actor.broken_stream():
                items.append(item)
    assert items == [1]
    assert await actor.length("abc") == 3  # control: the actor serves on


# -- sizes (item 11) ------------------------------------------------------------------


async def test_oversized_arguments_are_refused_before_sending() -> None:
    async with pyisolate.Runtime(limits=Limits(max_frame=1 << 20)) as rt:
        actor = await rt.spawn(Awkward)
        with pytest.raises(MessageTooLargeError, match="frame limit") as info:
            await actor.length("x" * (2 << 20))
        assert info.value.size > info.value.limit
        assert isinstance(info.value, ValueError)
        assert await actor.length("x" * (512 << 10)) == 512 << 10  # control
        assert await actor.length("x") == 1


# -- small ones (item 13) -------------------------------------------------------------


async def test_timeout_says_what_timed_out(rt: pyisolate.Runtime) -> None:
    actor = await rt.spawn(Awkward, name="sleepy")
    with pytest.raises(TimeoutError, match=r"'sleepy'\.sleep\(\) did not answer within 0.2 s"):
        await actor.call("sleep", 5, timeout=0.2)
    assert await actor.length("ab") == 2


async def test_system_exit_in_constructor_keeps_its_code(rt: pyisolate.Runtime) -> None:
    with pytest.raises(ActorStartError, match="exited with code 5"):
        await rt.spawn(ExitsInInit, 5)


async def test_a_dead_actor_is_reported_as_dead(rt: pyisolate.Runtime) -> None:
    for _ in range(3):
        actor = await rt.spawn(Victim)
        actor.kill()
        for _ in range(50):
            try:
                await actor.secret()
            except (pyisolate.ActorDiedError, pyisolate.ActorClosedError) as exc:
                assert "Host unreachable" not in str(exc)
                assert actor.name in str(exc)
                break
            await anyio.sleep(0.01)
        else:
            raise AssertionError("calls to a killed actor kept succeeding")


# -- file descriptors (item 6) ----------------------------------------------------------


def _run(script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_runtime_raises_the_soft_fd_limit() -> None:
    done = _run(
        """
        import resource, anyio, pyisolate
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 4096))
        async def main():
            async with pyisolate.Runtime():
                print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        anyio.run(main)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4096"]


@pytest.mark.slow
def test_spawning_past_the_fd_limit_fails_cleanly() -> None:
    # 200 concurrent spawns at a 1,024 limit used to abort the host inside
    # libzmq. Here: a tiny limit, many concurrent spawns, sandbox off (cheaper).
    done = _run(
        """
        import resource, anyio, pyisolate
        resource.setrlimit(resource.RLIMIT_NOFILE, (160, 160))
        from security.channel_actors import Victim

        async def main():
            async with pyisolate.Runtime(sandbox=pyisolate.SandboxMode.DISABLED) as rt:
                results = []

                async def one():
                    try:
                        ref = await rt.spawn(Victim)
                        results.append(await ref.secret())
                    except pyisolate.ActorStartError as exc:
                        results.append(str(exc))

                async with anyio.create_task_group() as tg:
                    for _ in range(20):
                        tg.start_soon(one)
                ok = results.count("secret")
                refused = [r for r in results if "file descriptors" in r and "ulimit -n" in r]
                print(ok, len(refused))
                assert ok >= 1 and refused and ok + len(refused) == 20, results

        anyio.run(main)
        """
    )
    assert done.returncode == 0, done.stdout + done.stderr
