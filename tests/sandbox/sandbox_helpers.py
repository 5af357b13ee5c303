"""Run a small Python script under the launcher (or, for positive controls,
without it) and read back the JSON object it printed last.

A module with a unique name, not conftest: the lead's tests/conftest.py and
this directory's conftest.py would shadow each other as ``conftest``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from pyisolate.sandbox import SandboxMode, SandboxPolicy, build_launch

RunScript = Callable[..., dict[str, Any]]


def run_script(
    code: str,
    *,
    sandbox: bool = True,
    policy: SandboxPolicy | None = None,
    ro_binds: tuple[str, ...] = (),
    rw_binds: tuple[str, ...] = (),
    socket_paths: tuple[str, ...] = (),
    pass_fds: tuple[int, ...] = (),
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> dict[str, Any]:
    """Run ``code`` with the interpreter; it must print one JSON object last."""
    mode = SandboxMode.REQUIRED if sandbox else SandboxMode.DISABLED
    plan = build_launch(
        policy or SandboxPolicy(),
        mode,
        [sys.executable, "-c", code],
        env=env or {},
        ro_binds=list(ro_binds),
        rw_binds=list(rw_binds),
        socket_paths=list(socket_paths),
        pass_fds=list(pass_fds),
    )
    proc = plan.popen(stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"script failed ({proc.returncode}): {err.decode()}"
    lines = out.decode().strip().splitlines()
    assert lines, f"no output; stderr: {err.decode()}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result
