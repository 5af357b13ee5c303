"""Supervision benchmark: restart latency, template spawns, actors per machine.

Measures, in one run:

* restart latency: SIGKILL a supervised actor, time until the next call
  through its reference succeeds (median, p99), forked from the template and
  cold, the cold figure being the baseline;
* spawn to first reply of an actor that imports torch, from the template and
  cold;
* how many actors this machine holds: ``--actors`` (default 256) actors from
  the template, each answering a call, with their memory (PSS and USS from
  ``/proc/PID/smaps_rollup``) against one cold actor's;
* optionally (``--chaos SECONDS``) the chaos scenario of the test suite, longer.

Targets: restart <= 100 ms median; template spawn <= 50 ms; 256 actors.
Run: ``python -m benchmarks.bench_supervision`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

import pyisolate
from pyisolate.supervision import ChildSpec, Supervisor

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests" / "supervision"
sys.path[:0] = [str(TESTS), str(TESTS.parent)]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _memory(pid: int) -> tuple[int, int]:
    """(PSS, USS) in KiB of one process."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                fields[parts[0].rstrip(":")] = int(parts[1])
    return fields.get("Pss", 0), fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)


async def bench_restart(rt: pyisolate.Runtime, template: bool, n: int) -> list[float]:
    sup = await rt.supervise(
        Supervisor(
            intensity=n + 10,
            period=1.0,
            heartbeat=None,
            children=[ChildSpec("w", "sup_actors:Worker", template=template)],
        )
    )
    ref = sup.ref("w")
    await ref.echo(0)
    times = []
    for _ in range(n):
        pid = rt.process_id(ref)
        assert pid is not None
        started = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        while True:
            try:
                await ref.echo(1, timeout=30)
                break
            except pyisolate.ActorDiedError:
                continue  # sent before the death was seen: not retried, by design
        times.append(time.perf_counter() - started)
    await sup.stop()
    return times


async def bench_spawn(rt: pyisolate.Runtime, template: bool, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        ref = await rt.spawn(
            "torch_actor:TorchWorker", options=pyisolate.SpawnOptions(template=template)
        )
        await ref.torch_version()
        times.append(time.perf_counter() - started)
        await ref.stop()
    return times


async def bench_many(rt: pyisolate.Runtime, count: int) -> dict[str, Any]:
    started = time.perf_counter()
    refs = []
    for _ in range(count):
        refs.append(
            await rt.spawn("sup_actors:Worker", options=pyisolate.SpawnOptions(template=True))
        )
    spawned = time.perf_counter() - started
    async with anyio.create_task_group() as tg:
        results: list[int] = []

        async def ask(ref: Any) -> None:
            results.append(await ref.inc(1, timeout=60))

        for ref in refs:
            tg.start_soon(ask, ref)
    assert results == [1] * count
    pss, uss = zip(*(_memory(rt.process_id(r)) for r in refs), strict=True)  # type: ignore[arg-type]
    cold = await rt.spawn("sup_actors:Worker")
    await cold.inc()
    cold_pss, cold_uss = _memory(rt.process_id(cold))  # type: ignore[arg-type]
    for ref in [*refs, cold]:
        await ref.stop(timeout=5)
    return {
        "count": count,
        "spawn_s": spawned,
        "pss": statistics.mean(pss),
        "uss": statistics.mean(uss),
        "cold_pss": cold_pss,
        "cold_uss": cold_uss,
    }


async def run(args: argparse.Namespace) -> None:
    sandbox = None
    if args.no_sandbox:
        from pyisolate.sandbox import SandboxMode

        sandbox = SandboxMode.DISABLED
    kwargs: dict[str, Any] = {} if sandbox is None else {"sandbox": sandbox}
    rows: list[tuple[str, str, str]] = []
    async with pyisolate.Runtime(**kwargs) as rt:
        warm = await bench_restart(rt, True, args.restarts)
        cold = await bench_restart(rt, False, max(5, args.restarts // 3))
        rows.append(
            (
                "restart, template (SIGKILL -> next call)",
                f"median {statistics.median(warm) * 1e3:.1f} ms, p99 {_pct(warm, 0.99) * 1e3:.1f} ms",
                "target <= 100 ms",
            )
        )
        rows.append(
            (
                "restart, cold (baseline)",
                f"median {statistics.median(cold) * 1e3:.1f} ms, p99 {_pct(cold, 0.99) * 1e3:.1f} ms",
                f"x{statistics.median(cold) / statistics.median(warm):.1f} slower",
            )
        )
        try:
            import torch  # noqa: F401

            t_warm = await bench_spawn(rt, True, args.spawns)
            t_cold = await bench_spawn(rt, False, max(3, args.spawns // 3))
            rows.append(
                (
                    "spawn torch actor, template",
                    f"median {statistics.median(t_warm[1:] or t_warm) * 1e3:.1f} ms "
                    f"(first, starting the template: {t_warm[0] * 1e3:.0f} ms)",
                    "target <= 50 ms",
                )
            )
            rows.append(
                (
                    "spawn torch actor, cold (baseline)",
                    f"median {statistics.median(t_cold) * 1e3:.1f} ms",
                    f"x{statistics.median(t_cold) / statistics.median(t_warm[1:] or t_warm):.1f} slower",
                )
            )
        except ImportError:
            rows.append(("spawn torch actor", "skipped: no torch", ""))
        many = await bench_many(rt, args.actors)
        rows.append(
            (
                f"{many['count']} concurrent actors (template), each answered",
                f"spawned in {many['spawn_s']:.1f} s",
                "target 256",
            )
        )
        rows.append(
            (
                "memory per actor, template",
                f"PSS {many['pss'] / 1024:.1f} MiB, USS {many['uss'] / 1024:.1f} MiB",
                "",
            )
        )
        rows.append(
            (
                "memory of one cold actor (baseline)",
                f"PSS {many['cold_pss'] / 1024:.1f} MiB, USS {many['cold_uss'] / 1024:.1f} MiB",
                "",
            )
        )
    if args.chaos:
        from test_sup_chaos import run_chaos  # type: ignore[import-not-found]  # tests/ on sys.path

        tally = await run_chaos(args.chaos)
        rows.append(
            (
                f"chaos {args.chaos:.0f} s",
                f"{tally['ok']} ok, errors {tally['errors']}",
                f"{tally['kills']} kills, {tally['stops']} freezes, "
                f"slowest call {tally['slowest']:.2f} s",
            )
        )
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  result")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value}" + (f"   ({note})" if note else ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--restarts", type=int, default=30)
    parser.add_argument("--spawns", type=int, default=10)
    parser.add_argument("--actors", type=int, default=256)
    parser.add_argument("--chaos", type=float, default=0.0, help="seconds of chaos (0: skip)")
    parser.add_argument("--no-sandbox", action="store_true")
    args = parser.parse_args(argv)
    # Restarts are logged as warnings by design; a benchmark provokes hundreds.
    logging.getLogger("pyisolate").setLevel(logging.ERROR)
    anyio.run(run, args)


if __name__ == "__main__":
    main()
