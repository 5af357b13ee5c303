"""Output-flood benchmark: the host loop's longest stall while an actor floods.

Measures, in one run, how late a 5 ms sleep of the host's event loop wakes up
(its stall) while:

* an actor sits idle (the baseline: what this machine's loop does anyway);
* an actor floods stderr with lines for ``--seconds`` (default 2), while a
  neighbour actor answers small calls (their round trip is printed too);
* an actor writes ``--mib`` (default 64) MiB to stdout without a newline;
* an actor floods the host's socket with envelopes (1 KiB stream items for a
  stream nobody opened, 256 to a BATCH frame) for ``--seconds``.

The host logs each actor's output through ``logging`` (here into a handler
that formats every record and writes it to /dev/null, so the cost of a real
handler is included). Before bounded output, the line flood stalled the loop
for the whole flood and 64 MiB without a newline took 46 s.
Run: ``python -m benchmarks flood`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

import pyisolate

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from security.channel_actors import Attacker  # noqa: E402  (needs the path above)
from security.output_actors import Noisy  # noqa: E402


class _Counting(logging.StreamHandler):  # type: ignore[type-arg]
    """Formats and writes every record (to /dev/null), counting them."""

    def __init__(self) -> None:
        super().__init__(open(os.devnull, "w"))  # noqa: SIM115
        self.count = 0
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        message = record.getMessage()
        if message.startswith("pyisolate: "):
            self.dropped += int(message.split()[1])
        super().emit(record)


async def _stalls(seconds: float | None, work: Any = None) -> tuple[list[float], Any]:
    """Sleep 5 ms in a loop while ``work`` runs (or for ``seconds``); the lateness of each."""
    gaps: list[float] = []
    done = anyio.Event()
    result: list[Any] = [None]

    async def ticker() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await anyio.sleep(0.005)
            gaps.append(time.perf_counter() - start - 0.005)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        if work is None:
            await anyio.sleep(seconds or 0)
        else:
            result[0] = await work()
        done.set()
    return gaps, result[0]


def _row(label: str, gaps: list[float], extra: str = "") -> None:
    p99 = sorted(gaps)[int(0.99 * (len(gaps) - 1))]
    print(f"{label:34} {max(gaps) * 1e3:9.1f}ms {p99 * 1e3:9.1f}ms  {extra}")


async def run(args: argparse.Namespace) -> None:
    handler = _Counting()
    actor_log = logging.getLogger("pyisolate.actor")
    actor_log.setLevel(logging.INFO)
    actor_log.addHandler(handler)
    actor_log.propagate = False
    async with pyisolate.Runtime() as rt:
        idle = await rt.spawn(Noisy, name="idle")
        flooder = await rt.spawn(Noisy, name="flooder")
        await idle.ping()
        await flooder.ping()
        print(f"{'host loop stall (5 ms ticks)':34} {'longest':>11} {'p99':>11}")

        baseline, _ = await _stalls(args.seconds)
        _row("idle actor (baseline)", baseline)

        latencies: list[float] = []

        async def line_flood() -> int:
            async with anyio.create_task_group() as tg:

                async def neighbour() -> None:
                    while True:
                        start = time.perf_counter()
                        await idle.ping()
                        latencies.append(time.perf_counter() - start)
                        await anyio.sleep(0.01)

                tg.start_soon(neighbour)
                written = int(await flooder.flood_lines(args.seconds, timeout=60))
                tg.cancel_scope.cancel()
            return written

        before = handler.count
        gaps, written = await _stalls(None, line_flood)
        await anyio.sleep(1.5)  # the last "dropped" note follows the flood
        logged = handler.count - before
        _row(
            f"stderr line flood, {args.seconds:g} s",
            gaps,
            f"{written / args.seconds:,.0f} lines/s written, {logged} logged, "
            f"{handler.dropped:,} counted as dropped",
        )
        print(
            f"{'  neighbour ping during it':34} {max(latencies) * 1e3:9.1f}ms "
            f"{'median':>5} {statistics.median(latencies) * 1e3:.2f}ms, {len(latencies)} calls"
        )

        nbytes = args.mib << 20

        async def no_newline() -> float:
            start = time.perf_counter()
            await flooder.no_newline(nbytes, "stdout", timeout=120)
            return time.perf_counter() - start

        gaps, took = await _stalls(None, no_newline)
        _row(f"{args.mib} MiB without a newline", gaps, f"took {took:.2f} s")

        attacker = await rt.spawn(Attacker, name="attacker")

        async def envelope_flood() -> int:
            return int(await attacker.flood(args.seconds, 1024, 1_000_000, timeout=120))

        gaps, sent = await _stalls(None, envelope_flood)
        _row(
            f"envelope flood, {args.seconds:g} s",
            gaps,
            f"{sent / args.seconds:,.0f} envelopes/s sent",
        )
        await idle.stop()
        await flooder.stop()
        await attacker.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the line flood")
    parser.add_argument("--mib", type=int, default=64, help="size of the no-newline output")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args(argv)
    anyio.run(run, args, backend=args.backend)


if __name__ == "__main__":
    main()
