"""Small helpers shared by the supervision tests."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING, Any

from conftest import eventually  # noqa: F401  (the root conftest's, re-exported)
from sup_actors import Worker

from pyisolate.supervision import ChildSpec, Heartbeat, Restart

if TYPE_CHECKING:
    from pathlib import Path

FAST_HEARTBEAT = Heartbeat(interval=0.1, timeout=0.3, tolerance=2)


def worker(
    cid: str, journal: Path | None = None, restart: Restart = Restart.PERMANENT, **kwargs: Any
) -> ChildSpec:
    return ChildSpec(
        cid,
        Worker,
        kwargs={"tag": cid, "journal": str(journal) if journal else None, **kwargs.pop("ctor", {})},
        restart=restart,
        **kwargs,
    )


def lines(journal: Path) -> list[str]:
    return journal.read_text().splitlines()


def signal_actor(rt: Any, ref: Any, sig: int) -> int:
    pid = rt.process_id(ref)
    assert pid is not None
    os.kill(pid, sig)
    return int(pid)


def resume(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
