"""Core messaging benchmark: pyisolate against raw pyzmq and a multiprocessing Pipe.

Measures, in one run and on the same machine state:

* small-call round trip (median and p99) for ``{"a": 1, "b": "x" * 16}``;
* pipelined calls with 64 in flight (calls per second);
* cold spawn to first reply, against a bare interpreter that imports the same
  runtime dependencies (zmq, msgpack, anyio, attrs), connects and says hello.

Absolute times drift on a shared machine; read the ratios to the baselines
measured in the same run. Run: ``python -m benchmarks.bench_core`` (or ``just bench``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING

import anyio
import msgpack
import zmq

import pyisolate

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

PAYLOAD = {"a": 1, "b": "x" * 16}
WINDOW = 64


class Echo(pyisolate.Actor):
    async def echo(self, x: object) -> object:
        return x

    def echo_sync(self, x: object) -> object:
        return x


# -- raw pyzmq: the same shape as pyisolate (host ROUTER, peer DEALER) --------------


def _zmq_echo_server(endpoint: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)
    sock.send_multipart([b"hello", b""])
    while True:
        tag, body = sock.recv_multipart()
        if tag == b"stop":
            break
        sock.send_multipart([tag, msgpack.packb(msgpack.unpackb(body))])
    sock.close(0)
    ctx.term()


def bench_raw_zmq(n: int, pipelined: int) -> tuple[list[float], float]:
    tmp = tempfile.mkdtemp(prefix="bench-zmq-")
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    endpoint = f"ipc://{tmp}/s"
    router.bind(endpoint)
    proc = mp.get_context("spawn").Process(target=_zmq_echo_server, args=(endpoint,))
    proc.start()
    try:
        ident, _, _ = router.recv_multipart()
        lat = []
        for _i in range(n):
            t0 = time.perf_counter()
            router.send_multipart([ident, b"c", msgpack.packb(PAYLOAD)])
            _, _, body = router.recv_multipart()
            msgpack.unpackb(body)
            lat.append(time.perf_counter() - t0)
        sent = done = 0
        t0 = time.perf_counter()
        while sent < min(WINDOW, pipelined):
            router.send_multipart([ident, b"p", msgpack.packb(PAYLOAD)])
            sent += 1
        while done < pipelined:
            _, _, body = router.recv_multipart()
            msgpack.unpackb(body)
            done += 1
            if sent < pipelined:
                router.send_multipart([ident, b"p", msgpack.packb(PAYLOAD)])
                sent += 1
        rate = pipelined / (time.perf_counter() - t0)
        router.send_multipart([ident, b"stop", b""])
        return lat, rate
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        router.close(0)
        ctx.term()
        shutil.rmtree(tmp, ignore_errors=True)


# -- multiprocessing Pipe ----------------------------------------------------------


def _pipe_echo_server(conn: Connection) -> None:
    while True:
        msg = conn.recv_bytes()
        if msg == b"stop":
            break
        conn.send_bytes(msgpack.packb(msgpack.unpackb(msg)))


def bench_pipe(n: int) -> list[float]:
    spawn = mp.get_context("spawn")
    parent, child = spawn.Pipe()
    proc = spawn.Process(target=_pipe_echo_server, args=(child,))
    proc.start()
    try:
        lat = []
        for _ in range(n):
            t0 = time.perf_counter()
            parent.send_bytes(msgpack.packb(PAYLOAD))
            msgpack.unpackb(parent.recv_bytes())
            lat.append(time.perf_counter() - t0)
        parent.send_bytes(b"stop")
        return lat
    finally:
        proc.join(5)
        parent.close()
        child.close()


# -- cold spawn baseline: a bare interpreter with the same imports that connects ----

_BARE = """
import sys, zmq, msgpack, anyio, attrs{extra}
ctx = zmq.Context(); s = ctx.socket(zmq.DEALER); s.connect(sys.argv[1])
s.send_multipart([b"hello", msgpack.packb([1, 2])]); s.recv_multipart(); s.close(0); ctx.term()
"""


def bench_bare_spawn(repeat: int, extra: str = "") -> list[float]:
    tmp = tempfile.mkdtemp(prefix="bench-spawn-")
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    endpoint = f"ipc://{tmp}/s"
    router.bind(endpoint)
    times = []
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-c", _BARE.format(extra=extra), endpoint])
            ident, _, _ = router.recv_multipart()
            router.send_multipart([ident, b"ok"])
            times.append(time.perf_counter() - t0)
            proc.wait()
    finally:
        router.close(0)
        ctx.term()
        shutil.rmtree(tmp, ignore_errors=True)
    return times


# -- pyisolate -----------------------------------------------------------------------


async def bench_pyisolate(n: int, pipelined: int, spawns: int) -> dict[str, object]:
    async with pyisolate.Runtime() as rt:
        ref = await rt.spawn(Echo, name="echo")
        for _ in range(200):
            await ref.echo(PAYLOAD)
        lat = []
        for _ in range(n):
            t0 = time.perf_counter()
            await ref.echo(PAYLOAD)
            lat.append(time.perf_counter() - t0)
        lat_sync = []
        for _ in range(n // 3):
            t0 = time.perf_counter()
            await ref.echo_sync(PAYLOAD)
            lat_sync.append(time.perf_counter() - t0)

        per_worker = pipelined // WINDOW

        async def worker() -> None:
            for _ in range(per_worker):
                await ref.echo(PAYLOAD)

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(WINDOW):
                tg.start_soon(worker)
        rate = per_worker * WINDOW / (time.perf_counter() - t0)
        await ref.stop()

        spawn_times = []
        for i in range(spawns):
            t0 = time.perf_counter()
            r = await rt.spawn(Echo, name=f"cold-{i}")
            await r.echo(1)
            spawn_times.append(time.perf_counter() - t0)
            await r.stop()
    return {"lat": lat, "lat_sync": lat_sync, "rate": rate, "spawn": spawn_times}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="pyisolate core messaging benchmark")
    parser.add_argument("-n", type=int, default=3000, help="round trips per measurement")
    parser.add_argument("--pipelined", type=int, default=20000, help="calls in the pipelined run")
    parser.add_argument("--spawns", type=int, default=10, help="cold spawns to time")
    args = parser.parse_args(argv)

    raw_lat, raw_rate = bench_raw_zmq(args.n, args.pipelined)
    pipe_lat = bench_pipe(args.n)
    bare = bench_bare_spawn(args.spawns)
    # anyio runs on asyncio: any anyio-based peer imports it too.
    bare_asyncio = bench_bare_spawn(args.spawns, ", asyncio")
    ours = anyio.run(bench_pyisolate, args.n, args.pipelined, args.spawns)

    raw_med, raw_p99 = summarize(raw_lat)
    rows = [
        ("round trip, raw pyzmq + msgpack", raw_med, raw_p99, 1.0),
        (
            "round trip, multiprocessing Pipe",
            *summarize(pipe_lat),
            summarize(pipe_lat)[0] / raw_med,
        ),
        (
            "round trip, pyisolate async method",
            *summarize(ours["lat"]),  # type: ignore[arg-type]
            summarize(ours["lat"])[0] / raw_med,
        ),  # type: ignore[arg-type]
        (
            "round trip, pyisolate sync method",
            *summarize(ours["lat_sync"]),  # type: ignore[arg-type]
            summarize(ours["lat_sync"])[0] / raw_med,
        ),  # type: ignore[arg-type]
    ]
    print(f"{'measurement':44} {'median':>10} {'p99':>10} {'x raw':>7}")
    for label, med, p99, ratio in rows:
        print(f"{label:44} {med * 1e6:8.0f}us {p99 * 1e6:8.0f}us {ratio:7.2f}")
    rate = float(ours["rate"])  # type: ignore[arg-type]
    print(f"\n{'pipelined, 64 in flight':44} {'calls/s':>10} {'x raw':>7}")
    print(f"{'raw pyzmq + msgpack':44} {raw_rate:10.0f} {1.0:7.2f}")
    print(f"{'pyisolate':44} {rate:10.0f} {rate / raw_rate:7.2f}")
    bare_med = statistics.median(bare)
    bare_asyncio_med = statistics.median(bare_asyncio)
    spawn_med = statistics.median(ours["spawn"])  # type: ignore[arg-type]
    print(f"\n{'cold spawn to first reply':44} {'median':>10} {'x bare':>7}")
    print(f"{'bare interpreter, same imports, connect':44} {bare_med * 1e3:8.1f}ms {1.0:7.2f}")
    print(
        f"{'  the same plus asyncio (anyio backend)':44} {bare_asyncio_med * 1e3:8.1f}ms "
        f"{bare_asyncio_med / bare_med:7.2f}"
    )
    print(
        f"{'pyisolate spawn + first call, sandboxed':44} {spawn_med * 1e3:8.1f}ms "
        f"{spawn_med / bare_med:7.2f}"
    )
    return {
        "rtt_ratio": summarize(ours["lat"])[0] / raw_med,  # type: ignore[arg-type]
        "pipelined_ratio": rate / raw_rate,
        "spawn_ratio": spawn_med / bare_med,
        "spawn_ratio_asyncio": spawn_med / bare_asyncio_med,
    }


def summarize(lat: list[float]) -> tuple[float, float]:
    ordered = sorted(lat)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99) - 1)]


if __name__ == "__main__":
    main()
