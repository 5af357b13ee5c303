"""The blocking facade's ``supervise``, and nested supervisor handles that
follow their supervisor's restarts."""

from __future__ import annotations

import os
import signal
import time

import pytest
from sup_helpers import eventually, signal_actor, worker

import pyisolate
from pyisolate.sandbox import SandboxMode
from pyisolate.supervision import ChildSpec, Supervisor


def test_blocking_supervise() -> None:
    with pyisolate.Runtime.blocking(sandbox=SandboxMode.DISABLED) as brt:
        sup = brt.supervise(
            Supervisor(children=[worker("a"), ChildSpec("sub", Supervisor(children=[worker("x")]))])
        )
        a = sup.ref("a")
        assert a.inc(2) == 2
        assert list(a.numbers(3)) == [0, 1, 2]
        pid = brt.runtime.process_id(a.ref)
        os.kill(pid, signal.SIGKILL)
        assert a.value(timeout=10) == 0  # the same reference, the next incarnation
        assert brt.runtime.process_id(a.ref) != pid
        assert [c.id for c in sup.which_children()] == ["a", "sub"]
        deadline = time.monotonic() + 5
        while sup.count_children().active != 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert sup.stats.restarts == 1
        sub = sup.supervisor("sub")
        assert sub.ref("x").inc() == 1
        b = sup.start_child(worker("b"))
        assert b.echo("hi") == "hi"
        sup.terminate_child("b")
        sup.delete_child("b")
        assert sup.count_children().specs == 2
        sup.stop()
        assert sup.done
        sup.wait()
        with pytest.raises(pyisolate.ActorClosedError):
            a.value(timeout=5)


@pytest.mark.anyio
async def test_nested_handle_follows_restarts(rt: pyisolate.Runtime) -> None:
    sup = await rt.supervise(
        Supervisor(children=[ChildSpec("sub", Supervisor(intensity=0, children=[worker("x")]))])
    )
    sub = sup.supervisor("sub")
    x = sub.ref("x")
    assert await x.inc() == 1
    signal_actor(rt, x, signal.SIGKILL)  # sub gives up at once; sup restarts it
    await eventually(lambda: sup.stats.restarts == 1 and sup.count_children().active == 1)
    assert sub.done
    assert sub.failure is not None
    assert [c.status for c in sub.which_children()] == ["running"]  # the live one's
    assert sub.ref("x") is x
    assert await sub.ref("x").inc() == 1
    await sub.terminate_child("x")
    assert sup.supervisor("sub").count_children().active == 0
