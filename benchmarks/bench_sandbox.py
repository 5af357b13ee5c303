"""The price of the sandbox: what isolation costs an actor, measured in one run.

Through the runtime, the same actor class with ``SandboxMode.DISABLED`` and
with the default sandbox (AUTO, full where the machine allows it):

* spawn to first reply (``rt.spawn`` + one small call), median and p99;
* small-call round trip (``{"a": 1, "b": "x" * 16}``), median and p99 over
  ``--calls`` calls per variant.

The two variants are interleaved (alternating order, in blocks) so that a
noisy machine slows both alike; read the medians. Below them, the launcher's
own figures: ``python -c 'import zmq, msgpack, anyio, attrs'`` bare and under
the launcher (plan building included), and bwrap alone. The last line checks
the targets: the sandbox adds at most 10 ms to a spawn and 5% to a round trip.

Run: ``python -m benchmarks sandbox [--spawns N] [--calls N] [--starts N]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import anyio

import pyisolate
from pyisolate.sandbox import SandboxMode, SandboxPolicy, build_launch, detect

if TYPE_CHECKING:
    from collections.abc import Callable

CODE = "import zmq, msgpack, anyio, attrs"
PAYLOAD = {"a": 1, "b": "x" * 16}
TARGET = "benchmarks.bench_sandbox:Echo"
SPAWN_TARGET_MS = 10.0
CALL_TARGET_RATIO = 1.05
BLOCK = 250


class Echo(pyisolate.Actor):
    async def echo(self, x: object) -> object:
        return x


def _median_p99(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


# -- through the runtime ------------------------------------------------------------


async def _runtime_figures(
    spawns: int, calls: int, variants: dict[str, SandboxMode]
) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {k: {"spawn": [], "call": []} for k in variants}
    names = list(variants)
    async with pyisolate.Runtime() as rt:
        # Warm-up: the first spawns pay for the page cache and the detection.
        for mode in variants.values():
            ref = await rt.spawn(TARGET, sandbox=mode)
            await ref.echo(PAYLOAD)
            await ref.stop()
        for i in range(spawns):
            for name in names if i % 2 == 0 else reversed(names):
                t0 = time.perf_counter()
                ref = await rt.spawn(TARGET, sandbox=variants[name])
                await ref.echo(PAYLOAD)
                out[name]["spawn"].append(time.perf_counter() - t0)
                await ref.stop()
        refs = {name: await rt.spawn(TARGET, sandbox=mode) for name, mode in variants.items()}
        for ref in refs.values():
            for _ in range(200):
                await ref.echo(PAYLOAD)
        blocks = max(1, -(-calls // BLOCK))
        for b in range(blocks):
            for name in names if b % 2 == 0 else reversed(names):
                ref, lat = refs[name], out[name]["call"]
                for _ in range(BLOCK):
                    t0 = time.perf_counter()
                    await ref.echo(PAYLOAD)
                    lat.append(time.perf_counter() - t0)
        for ref in refs.values():
            await ref.stop()
    return out


# -- the launcher alone -------------------------------------------------------------


def _times(n: int, start: Callable[[], subprocess.Popen[bytes]]) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        proc = start()
        if proc.wait() != 0:
            raise SystemExit(f"benchmark command failed ({proc.returncode})")
        times.append(time.perf_counter() - t0)
    return times


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


def _launcher_figures(n: int) -> dict[str, list[float]]:
    starts: dict[str, Callable[[], subprocess.Popen[bytes]]] = {
        "bare": _bare,
        "launcher": _sandboxed,
        "bwrap": _bwrap_alone,
    }
    for start in starts.values():
        _times(2, start)  # warm the page cache
    out: dict[str, list[float]] = {k: [] for k in starts}
    for i in range(n):
        for name in starts if i % 2 == 0 else reversed(list(starts)):
            out[name] += _times(1, starts[name])
    return out


# -- report -------------------------------------------------------------------------


def _row(label: str, values: list[float], base: float | None = None) -> str:
    med, p99 = _median_p99(values)
    extra = ""
    if base is not None:
        extra = f"  {med - base:+8.3f} ms  {med / base:5.2f}x"
    return f"{label:44s} {med:9.3f} {p99:9.3f}{extra}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sandbox", description=__doc__)
    parser.add_argument("--spawns", type=int, default=20, help="spawns per variant (20)")
    parser.add_argument("--calls", type=int, default=2500, help="round trips per variant (2500)")
    parser.add_argument("--starts", type=int, default=10, help="launcher starts per kind (10)")
    args = parser.parse_args(argv)

    det = detect()
    print(f"sandbox: {det.model} ({det.level})")
    full = det.level == "full"
    variants = {"unsandboxed": SandboxMode.DISABLED}
    if full:
        variants["sandboxed"] = SandboxMode.AUTO
    else:
        print("no full sandbox here: only the unsandboxed figures")
    res = anyio.run(_runtime_figures, args.spawns, args.calls, variants)

    print(f"\n{'through the runtime':44s} {'median':>9s} {'p99':>9s}  {'vs unsandboxed':>20s}")
    print(f"{'(milliseconds)':44s}")
    base_spawn = _median_p99(res["unsandboxed"]["spawn"])[0]
    base_call = _median_p99(res["unsandboxed"]["call"])[0]
    n_spawn, n_call = len(res["unsandboxed"]["spawn"]), len(res["unsandboxed"]["call"])
    print(_row(f"spawn to first reply, unsandboxed (n={n_spawn})", res["unsandboxed"]["spawn"]))
    if full:
        print(_row("spawn to first reply, sandboxed", res["sandboxed"]["spawn"], base_spawn))
    print(_row(f"small-call round trip, unsandboxed (n={n_call})", res["unsandboxed"]["call"]))
    if full:
        print(_row("small-call round trip, sandboxed", res["sandboxed"]["call"], base_call))

    if full:
        launch = _launcher_figures(args.starts)
        base = _median_p99(launch["bare"])[0]
        print(f"\n{'the launcher alone (n=' + str(args.starts) + ')':44s}")
        print(_row("python -c imports, bare", launch["bare"]))
        print(_row("python -c imports, under the launcher", launch["launcher"], base))
        print(_row("bwrap --ro-bind / / true", launch["bwrap"], base))

        spawn_delta = _median_p99(res["sandboxed"]["spawn"])[0] - base_spawn
        call_ratio = _median_p99(res["sandboxed"]["call"])[0] / base_call
        spawn_ok = "PASS" if spawn_delta <= SPAWN_TARGET_MS else "MISS"
        call_ok = "PASS" if call_ratio <= CALL_TARGET_RATIO else "MISS"
        print(
            f"\ntargets: spawn +{spawn_delta:.1f} ms (<= {SPAWN_TARGET_MS:.0f} ms) {spawn_ok}; "
            f"round trip {call_ratio:.3f}x (<= {CALL_TARGET_RATIO:.2f}x) {call_ok}"
        )


if __name__ == "__main__":
    main()
