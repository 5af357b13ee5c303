"""Transport-level cost of moving a float32 tensor to another process.

Measures, in one run, pyisolate's transports (handle + fds over a socketpair,
the envelope body beside them, the receiver importing the tensor and acking)
against baselines: in-process ``t.sum()``, ``t * 2``, ``dst.copy_(src)``; a
torch.multiprocessing Queue; raw pyzmq frames of the same size (ipc://). Ratios
are against ``dst.copy_(src)`` (one memcpy). The runtime's own per-call
overhead (a pyzmq frame per message) is benchmarked with the actor runtime.

    python benchmarks/bench_tensors.py            # 1 MiB and 64 MiB, < 2 minutes
    python benchmarks/bench_tensors.py --big      # adds 512 MiB
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

MiB = 1 << 20

# The receiving process: imports each tensor, optionally writes all of it, acks.
CHILD = r"""
import socket, sys, time
import torch
from pyisolate import transport as T
from pyisolate._wire import Codec, DecodeContext, ExtRegistry
torch.set_num_threads(1)
registry = ExtRegistry(); T.install(registry); codec = Codec(registry)
sock = socket.socket(fileno=int(sys.argv[1]))
session = T.TransportSession(send_control=lambda p, b: None)
while True:
    tag, fds = T.recv_fds(sock, 253)
    if not tag:
        break
    op, body = tag[:1], tag[1:]
    ctx = DecodeContext(fds=fds, session=session)
    t = codec.decode(body, ctx)
    T.close_unused_fds(ctx.fds)
    start = time.perf_counter()
    if op == b"w":
        t.fill_(1.0)  # every page copied on write
    sock.send(str(time.perf_counter() - start).encode())
    del t
"""

ZMQ_CHILD = r"""
import sys, zmq
z = zmq.Context().socket(zmq.PAIR); z.connect(sys.argv[1])
while True:
    frame = z.recv(copy=False)
    if len(frame) == 0:
        break
    z.send(b"ok")
"""


def _timeit(fn: Callable[[], Any], reps: int) -> float:
    fn()  # warm
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _mpq_child(queue: Any, acks: Any) -> None:
    while (t := queue.get()) is not None:
        acks.put(float(t[0]))


def main() -> None:
    import torch.multiprocessing as tmp
    import zmq

    from pyisolate import transport as T
    from pyisolate._wire import Codec, EncodeContext, ExtRegistry

    parser = argparse.ArgumentParser(description="tensor transport benchmark")
    parser.add_argument("--big", action="store_true", help="also measure 512 MiB")
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()

    registry = ExtRegistry()
    T.install(registry)
    codec = Codec(registry)
    workdir = tempfile.mkdtemp(prefix="pyisolate-bench-")
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with child:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(child.fileno())], pass_fds=[child.fileno()]
        )
    addr = f"ipc://{workdir}/z.sock"
    z = zmq.Context().socket(zmq.PAIR)
    z.bind(addr)
    zproc = subprocess.Popen([sys.executable, "-c", ZMQ_CHILD, addr])
    mp = tmp.get_context("spawn")
    queue, acks = mp.Queue(), mp.Queue()
    mproc = mp.Process(target=_mpq_child, args=(queue, acks))
    mproc.start()

    sessions = {
        n: T.TransportSession(send_control=lambda p, b: None, transport=n, workdir=workdir)
        for n in ("inline", "shm", "file")
    }

    def send(t: Any, transport: str, op: bytes = b"r") -> float:
        ectx = EncodeContext(peer=1, session=sessions[transport])
        body = codec.encode(t, ectx)
        T.send_fds(parent, ectx.fds, op + body)
        ectx.keepalive.clear()
        return float(parent.recv(64))

    rows: list[tuple[str, str, float, float]] = []
    try:
        _measure(args, rows, send, z, queue, acks)
    finally:
        T.send_fds(parent, [], b"")
        z.send(b"")
        queue.put(None)
        for p in (proc, zproc):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        mproc.join(30)
        parent.close()
        z.close(linger=0)
        for name in os.listdir(workdir):
            os.unlink(os.path.join(workdir, name))
        os.rmdir(workdir)

    print(f"{'size':>8}  {'what':<36} {'median':>12} {'x copy_':>9}")
    for size, name, seconds, ratio in rows:
        print(f"{size:>8}  {name:<36} {seconds * 1e6:>10.0f}us {ratio:>9.2f}")


def _measure(
    args: Any,
    rows: list[tuple[str, str, float, float]],
    send: Callable[..., float],
    z: Any,
    queue: Any,
    acks: Any,
) -> None:
    import torch

    from pyisolate import transport as T

    sizes_kib = [16, 48, 1024, 64 * 1024] + ([512 * 1024] if args.big else [])
    for kib in sizes_kib:
        n = kib * 1024 // 4
        mib = kib / 1024
        reps = args.reps if kib < 512 * 1024 else 3
        measured, base = _measure_size(torch.randn(n), T.empty(n), kib, reps, send, z, queue, acks)
        for name, seconds in measured.items():
            rows.append(
                (f"{kib} KiB" if kib < 1024 else f"{mib:.0f} MiB", name, seconds, seconds / base)
            )


def _measure_size(
    src: Any,
    shared: Any,
    kib: int,
    reps: int,
    send: Callable[..., float],
    z: Any,
    queue: Any,
    acks: Any,
) -> tuple[dict[str, float], float]:
    """One size's rows; ``shared`` is an allocator tensor with ``src``'s values."""
    dst = src.clone()
    shared.copy_(src)
    base = _timeit(lambda: dst.copy_(src), reps)
    measured = {
        "in-process t.sum()": _timeit(lambda: src.sum(), reps),
        "in-process t * 2": _timeit(lambda: src * 2, reps),
        "in-process dst.copy_(src)": base,
        "raw pyzmq frame + ack": _timeit(
            lambda: (z.send(memoryview(src.numpy())), z.recv()),
            reps,
        ),
        "torch.multiprocessing Queue + ack": _timeit(
            lambda: (queue.put(src), acks.get()),
            reps,
        ),
        "pyisolate shm (one copy)": _timeit(lambda: send(src, "shm"), reps),
        "pyisolate shm (T.empty: no copy)": _timeit(lambda: send(shared, "shm"), reps),
        "pyisolate file (one copy)": _timeit(lambda: send(src, "file"), reps),
    }
    if kib <= 48:  # the benchmark's envelope rides in a 64 KiB fd record
        measured["pyisolate inline"] = _timeit(lambda: send(src, "inline"), reps)
    measured["receiver writes all of it (CoW)"] = statistics.median(
        send(shared, "shm", b"w") for _ in range(3)
    )
    return measured, base


if __name__ == "__main__":
    main()
