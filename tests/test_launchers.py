"""The launcher seam, the sandbox seam, and the newcomer's errors at spawn."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest
from actors import Counter

import pyisolate
from pyisolate import ActorStartError, SandboxMode, SandboxPolicy, SpawnOptions
from pyisolate.actors.testing import RecordingLauncher
from pyisolate.sandbox import Bubblewrap, LaunchRequest, NullSandbox, sandbox_for

pytestmark = pytest.mark.anyio


class Person(pyisolate.Actor):
    def __init__(self, name: str, options: str = "none") -> None:
        self.person, self.extra = name, options

    def who(self) -> str:
        return f"{self.person}/{self.extra}"


async def test_an_injected_launcher_starts_every_cold_actor() -> None:
    launcher = RecordingLauncher()
    async with pyisolate.Runtime(launcher=launcher) as rt:
        first = await rt.spawn(Counter, name="first")
        await rt.spawn(Counter, name="second")
        assert launcher.started == ["first", "second"]
        assert await first.inc() == 1


async def test_a_failed_launch_leaves_nothing_behind() -> None:
    launcher = RecordingLauncher(fail_next=1)
    async with pyisolate.Runtime(launcher=launcher) as rt:
        with pytest.raises(ActorStartError, match="on purpose"):
            await rt.spawn(Counter, name="doomed")
        ok = await rt.spawn(Counter, name="doomed")  # the name is free again
        assert await ok.inc() == 1
        assert [r.name for r in rt.actors()] == ["doomed"]


async def test_templates_go_through_the_fork_launcher_not_the_cold_one() -> None:
    launcher = RecordingLauncher()
    async with pyisolate.Runtime(launcher=launcher) as rt:
        ref = await rt.spawn(Counter, options=SpawnOptions(template=True))
        assert await ref.inc() == 1
        assert launcher.started == []  # forked, not started cold


def test_sandboxes_are_values() -> None:
    assert isinstance(sandbox_for(SandboxMode.DISABLED, SandboxPolicy()), NullSandbox)
    assert sandbox_for(SandboxMode.AUTO, SandboxPolicy()) == Bubblewrap(SandboxPolicy())
    plan = NullSandbox().plan(LaunchRequest(argv=("true",), cgroup=False))
    try:
        assert plan.isolation == "none"
        assert plan.argv == ("true",)
    finally:
        plan.close()


# -- spawn's own keywords never silently eat a constructor's -------------------


async def test_a_constructor_argument_named_like_spawns_own_is_refused(
    rt: pyisolate.Runtime,
) -> None:
    with pytest.raises(TypeError, match=r"init=\{'name': \.\.\.\}"):
        await rt.spawn(Person, name="Bob")
    bob = await rt.spawn(Person, init={"name": "Bob", "options": "x"}, name="person-bob")
    assert await bob.who() == "Bob/x"
    assert bob.name == "person-bob"


async def test_a_string_target_gets_the_hint_from_the_actor(rt: pyisolate.Runtime) -> None:
    with pytest.raises(ActorStartError, match=r"init=\{'name': \.\.\.\}"):
        await rt.spawn("test_launchers:Person", name="Bob")


# -- scripts --------------------------------------------------------------------


def _run_script(where: Path, body: str, **files: str) -> subprocess.CompletedProcess[str]:
    written = []
    for name, text in files.items():
        (where / name).write_text(textwrap.dedent(text))
        written.append(where / name)
    script = where / f"script_{uuid.uuid4().hex[:8]}.py"
    script.write_text(textwrap.dedent(body))
    written.append(script)
    try:
        for path in written:
            path.chmod(0o644)
        return subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=where,
            env={**os.environ, "PYTHONPATH": str(Path(pyisolate.__file__).parents[1])},
        )
    finally:
        for path in written:
            path.unlink()


def test_an_unguarded_script_is_told_about_the_guard() -> None:
    done = _run_script(
        Path(tempfile.gettempdir()),
        """
        import anyio, pyisolate

        class Counter(pyisolate.Actor):
            def get(self) -> int:
                return 1

        async def main() -> None:
            async with pyisolate.Runtime() as rt:
                ref = await rt.spawn(Counter)
                print(await ref.get())

        anyio.run(main)
        """,
    )
    assert done.returncode != 0
    assert 'if __name__ == "__main__":' in done.stderr, done.stderr[-2000:]
    assert "interactive session" not in done.stderr


@pytest.mark.sandbox
def test_a_sandboxed_script_in_tmp_is_told_why_it_cannot_import() -> None:
    # Directly in the temp directory (as a user's /tmp/x.py): bound alone.
    helper = f"helpers_{uuid.uuid4().hex[:8]}"
    done = _run_script(
        Path(tempfile.gettempdir()),
        f"""
        import anyio, pyisolate
        from {helper} import shout

        class Loud(pyisolate.Actor):
            def say(self) -> str:
                return shout("hi")

        async def main() -> None:
            async with pyisolate.Runtime(sandbox=pyisolate.SandboxMode.REQUIRED) as rt:
                ref = await rt.spawn(Loud)
                print(await ref.say())

        if __name__ == "__main__":
            anyio.run(main)
        """,
        **{f"{helper}.py": "def shout(s):\n    return s.upper()\n"},
    )
    assert done.returncode != 0
    assert "sees the script" in done.stderr and "ro_binds" in done.stderr, done.stderr[-2000:]


# -- print() in an actor is seen by default ----------------------------------------


_CHATTY = """
import logging, anyio, pyisolate

class Chatty(pyisolate.Actor):
    def hello(self) -> int:
        print("hello from the actor")
        return 1

async def main() -> None:
    async with pyisolate.Runtime(sandbox=pyisolate.SandboxMode.DISABLED) as rt:
        ref = await rt.spawn(Chatty, name="chatty")
        assert await ref.hello() == 1
        await ref.stop()

if __name__ == "__main__":
    {setup}
    anyio.run(main)
"""


def test_print_in_an_actor_reaches_the_host_terminal_by_default() -> None:
    done = _run_script(Path(tempfile.gettempdir()), _CHATTY.format(setup="pass"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[chatty] hello from the actor" in done.stderr


def test_with_logging_configured_prints_are_records() -> None:
    setup = (
        'logging.basicConfig(level=logging.INFO, format="REC %(levelname)s %(name)s %(message)s")'
    )
    done = _run_script(Path(tempfile.gettempdir()), _CHATTY.format(setup=setup))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "REC INFO pyisolate.actor.chatty hello from the actor" in done.stderr
    assert "[chatty] hello" not in done.stderr
