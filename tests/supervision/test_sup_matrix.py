"""Each restart type against each kind of exit (OTP's supervisor_SUITE spirit).

One supervisor holds three children, one per restart type; all three meet the
same exit, then each must be restarted (a new process, fresh state, the same
reference) or not, as OTP prescribes:

=====================  =========  =========  =========
exit                   PERMANENT  TRANSIENT  TEMPORARY
=====================  =========  =========  =========
normal (stop, self)    restart    stays down deleted
abnormal (all others)  restart    restart    deleted
=====================  =========  =========  =========
"""

from __future__ import annotations

import contextlib
import signal
from typing import TYPE_CHECKING

import pytest
from sup_helpers import FAST_HEARTBEAT, eventually, signal_actor, worker

import pyisolate
from pyisolate.supervision import Backoff, Restart, Supervisor

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

TYPES = (Restart.PERMANENT, Restart.TRANSIENT, Restart.TEMPORARY)
NORMAL = ("stop", "self_exit", "self_exit_sync")
ABNORMAL = ("start_fails", "os_exit", "sigkill", "heartbeat", "protocol")


async def _inflict(kind: str, rt: pyisolate.Runtime, ref: object) -> None:
    if kind == "stop":
        await ref.stop()  # type: ignore[attr-defined]
    elif kind in ("self_exit", "self_exit_sync"):
        method = "quit" if kind == "self_exit" else "quit_sync"
        with contextlib.suppress(pyisolate.ActorError):
            await ref.call(method)  # type: ignore[attr-defined]
    elif kind == "os_exit":
        with contextlib.suppress(pyisolate.ActorDiedError):
            await ref.die(3)  # type: ignore[attr-defined]
    elif kind in ("sigkill", "start_fails"):
        signal_actor(rt, ref, signal.SIGKILL)
    elif kind == "heartbeat":
        signal_actor(rt, ref, signal.SIGSTOP)  # hung: the supervisor must kill it
    elif kind == "protocol":
        with contextlib.suppress(pyisolate.PyisolateError):
            await ref.violate()  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize("kind", NORMAL + ABNORMAL)
async def test_restart_type_against_exit(kind: str, tmp_path: Path, rt: pyisolate.Runtime) -> None:
    flag = tmp_path / "fail-start"
    spec = Supervisor(
        intensity=20,
        period=5.0,
        heartbeat=FAST_HEARTBEAT,
        children=[
            worker(
                t.value,
                restart=t,
                ctor={"fail_flag": str(flag)},
                backoff=Backoff(minimum=0.05, maximum=0.2),
            )
            for t in TYPES
        ],
    )
    sup = await rt.supervise(spec)
    refs = {t: sup.ref(t.value) for t in TYPES}
    pids = {}
    for t, ref in refs.items():
        assert await ref.inc(5) == 5
        pids[t] = rt.process_id(ref)
    if kind == "start_fails":
        flag.touch()
    for ref in refs.values():
        await _inflict(kind, rt, ref)
    if kind == "start_fails":
        # Every restart of the two restarting children fails until the flag goes.
        await eventually(lambda: sup.stats.start_failures >= 4, timeout=10)
        flag.unlink()
    abnormal = kind in ABNORMAL
    expect_up = {Restart.PERMANENT: True, Restart.TRANSIENT: abnormal, Restart.TEMPORARY: False}
    await eventually(
        lambda: all(
            any(c.id == t.value and c.status == "running" for c in sup.which_children()) == up
            for t, up in expect_up.items()
        ),
        timeout=10,
    )
    for t, up in expect_up.items():
        if up:
            assert await refs[t].value(timeout=10) == 0  # a fresh incarnation
            assert rt.process_id(refs[t]) != pids[t]
            assert refs[t].id == sup.ref(t.value).id
    ids = [c.id for c in sup.which_children()]
    assert "temporary" not in ids  # OTP deletes an exited temporary child
    assert "transient" in ids  # a transient child stays, running or not
    counts = sup.count_children()
    assert counts.specs == 2
    assert counts.active == sum(expect_up.values())
    if abnormal:
        assert sup.stats.failures == 3
        if kind == "heartbeat":
            assert sup.stats.hangs == 3
    else:
        assert sup.stats.normal_exits == 3
    if not expect_up[Restart.TRANSIENT]:
        with pytest.raises(pyisolate.ActorClosedError):
            await refs[Restart.TRANSIENT].value(timeout=2)
    await sup.stop()
