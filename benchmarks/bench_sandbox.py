"""Start-up cost of the sandbox: the price an actor pays for isolation.

Prints the median time to run ``python -c 'import zmq, msgpack, anyio, attrs'``
bare and under the launcher (plan building included), and bwrap alone, with
ratios against the bare start measured in the same run. Run:
``python benchmarks/bench_sandbox.py [N]``.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from pyisolate.sandbox import SandboxMode, SandboxPolicy, build_launch, detect

CODE = "import zmq, msgpack, anyio, attrs"


def _median_ms(n: int, start: Callable[[], subprocess.Popen[bytes]]) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        proc = start()
        if proc.wait() != 0:
            raise SystemExit(f"benchmark command failed ({proc.returncode})")
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _bare() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", CODE])


def _sandboxed() -> subprocess.Popen[bytes]:
    plan = build_launch(
        SandboxPolicy(),
        SandboxMode.REQUIRED,
        [sys.executable, "-c", CODE],
        env={},
        ro_binds=[p for p in sys.path if p],
        rw_binds=[],
        socket_paths=[],
        pass_fds=[],
    )
    return plan.popen()


def _bwrap_alone() -> subprocess.Popen[bytes]:
    bwrap = shutil.which("bwrap") or "bwrap"
    return subprocess.Popen([bwrap, "--ro-bind", "/", "/", "true"])


def main(n: int = 20) -> None:
    det = detect()
    print(f"sandbox: {det.model} ({det.level}); median of {n} runs")
    _median_ms(2, _bare)  # warm the page cache
    bare = _median_ms(n, _bare)
    print(f"{'python -c imports, bare':40s} {bare:8.1f} ms  1.00x")
    if det.level != "full":
        print("no full sandbox here: skipping the sandboxed figures")
        return
    _median_ms(2, _sandboxed)
    boxed = _median_ms(n, _sandboxed)
    print(f"{'python -c imports, sandboxed':40s} {boxed:8.1f} ms  {boxed / bare:.2f}x")
    alone = _median_ms(n, _bwrap_alone)
    print(f"{'bwrap --ro-bind / / true':40s} {alone:8.1f} ms  {alone / bare:.2f}x")
    print(f"{'sandbox overhead per start':40s} {boxed - bare:8.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
