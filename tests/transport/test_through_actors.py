"""Tensors, arrays and OutOfBand buffers through the actor runtime.

Everything here goes through real actors: call arguments, results and stream
items, host to actor, actor to host and actor to actor (a reference passed in
a message, the bytes forwarded by the host). Each test leaves nothing behind:
the root ``leak_check`` fixture counts processes, fds, runtime directories and
/dev/shm entries, and the transport ``no_fd_leak`` fixture counts fds again.

Actors are shared across the cases of a test (torch's import costs about a
second per actor process); each case is still checked on its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import anyio
import pytest

import pyisolate
from pyisolate import transport as T
from pyisolate.errors import ActorDiedError

from .transport_actors import Tensors, storage_inode

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

pytestmark = pytest.mark.anyio

TESTS_DIR = Path(__file__).resolve().parents[1]
KiB = 1024


# -- comparing what came back ----------------------------------------------------------


def same(a: Any, b: Any, path: str = "value") -> None:
    """Assert ``b`` is ``a`` after a trip: types, dtypes, shapes, strides, bytes."""
    if isinstance(a, torch.Tensor):
        assert type(b) is torch.Tensor, f"{path}: {type(b)}"
        assert b.dtype == a.dtype, f"{path}: dtype {b.dtype} != {a.dtype}"
        assert b.shape == a.shape, f"{path}: shape {b.shape} != {a.shape}"
        if a.numel() > 1:
            assert b.stride() == a.stride(), f"{path}: strides {b.stride()} != {a.stride()}"
        assert torch.equal(a.detach(), b.detach()), f"{path}: values differ"
    elif isinstance(a, np.ndarray):
        assert type(b) is np.ndarray, f"{path}: {type(b)}"
        assert b.dtype == a.dtype and b.shape == a.shape, f"{path}: {b.dtype}{b.shape}"
        assert np.array_equal(a, b), f"{path}: values differ"
    elif isinstance(a, T.OutOfBand):
        assert bytes(b) == bytes(a.data), f"{path}: bytes differ"
    elif isinstance(a, (list, tuple)):
        assert type(b) is type(a) and len(b) == len(a), f"{path}: {type(b)} of {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and b.keys() == a.keys(), f"{path}: keys {list(b)}"
        for k in a:
            same(a[k], b[k], f"{path}[{k!r}]")
    else:
        assert b == a, f"{path}: {b!r} != {a!r}"


def _fds_outside_pool() -> int:
    """Open fds, not counting the shm transport's pooled segments (kept on purpose)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("/memfd:pyisolate-pool"):
                continue
        except OSError:
            pass
        count += 1
    return count


def _values() -> dict[str, Any]:
    """Name -> value: every dtype, odd shapes, views, nesting, many per message.
    Sizes straddle the inline threshold (64 KiB) so both paths are taken."""
    g = torch.Generator().manual_seed(1)
    big = torch.randn(256, 300, generator=g)  # 300 KiB: shm
    cases: dict[str, Any] = {}
    for dtype in (torch.float32, torch.bfloat16, torch.float64, torch.complex64):
        cases[f"{dtype}"] = torch.randn(200, 130, generator=g).to(dtype)
    cases["bool"] = torch.rand(300, 301, generator=g) > 0.5
    cases["int8"] = torch.randint(-128, 127, (70_000,), generator=g, dtype=torch.int8)
    cases["int64-small"] = torch.arange(10)
    cases["0-d"] = torch.tensor(2.5)
    cases["0-d-bf16"] = torch.tensor(-1.25, dtype=torch.bfloat16)
    cases["zero-size"] = torch.empty(0, 7)
    cases["zero-size-3d"] = torch.empty(3, 0, 2, dtype=torch.int8)
    cases["transpose"] = big.t()
    cases["slice-step"] = big[::3, 5:250:2]
    cases["column"] = big[:, 7]
    cases["offset-view"] = big[100:]
    cases["expanded"] = torch.arange(300.0).expand(400, 300)
    cases["conj"] = torch.randn(100, 100, dtype=torch.complex64, generator=g).conj()
    cases["nested"] = {
        "a": [big[:10], (torch.ones(3), {"deep": big[5:200]})],
        "b": (torch.zeros(2, 2, dtype=torch.float64), "text", 3),
    }
    cases["two-views-one-storage"] = [big, big[1:], big.t()]
    cases["many-large"] = [torch.full((100, 100), float(i)) for i in range(40)]
    cases["many-small"] = [torch.full((4,), float(i)) for i in range(200)]
    # more tensors than one sendmsg can carry fds for: the rest go inline
    cases["over-scm-max-fd"] = [torch.full((20_000,), float(i)) for i in range(260)]
    # numpy
    cases["np-float32"] = np.arange(100_000, dtype=np.float32).reshape(250, 400)
    cases["np-fortran"] = np.asfortranarray(np.arange(40_000.0).reshape(200, 200))
    cases["np-strided"] = np.arange(200_000, dtype=np.int16)[::3]
    cases["np-0d"] = np.array(7, dtype=np.uint8)
    cases["np-empty"] = np.empty((0, 4), dtype=np.complex128)
    cases["np-struct"] = np.zeros(5000, dtype=[("x", "<f4"), ("y", "<i8", (2,))])
    cases["np-bool"] = np.ones(300_000, dtype=bool)
    cases["np-shared"] = _filled(T.empty_array((300, 300), "float32"))
    cases["oob"] = T.OutOfBand(os.urandom(200 * KiB))
    cases["oob-small"] = T.OutOfBand(b"tiny")
    cases["oob-empty"] = T.OutOfBand(b"")
    shared = T.empty((300, 400), dtype=torch.float32)
    shared.copy_(torch.randn(300, 400, generator=g))
    cases["shared"] = shared
    cases["shared-view"] = shared[10:20, ::2]
    cases["mixed"] = [shared, big, np.ones(5), T.OutOfBand(b"z" * 100_000), "s", None]
    return cases


def _filled(arr: Any) -> Any:
    arr[...] = np.arange(arr.size, dtype=arr.dtype).reshape(arr.shape)
    return arr


def _expected(value: Any) -> Any:
    """What arrives: OutOfBand arrives as a memoryview (compared by bytes)."""
    return value


async def test_values_in_every_direction(anyio_backend: str) -> None:
    async with pyisolate.Runtime() as rt:
        a = await rt.spawn(Tensors, name="a")
        b = await rt.spawn(Tensors, name="b")
        for name, value in _values().items():
            # host -> actor -> host: as an argument, then as the result
            same(value, await a.echo(value), f"{name} echo")
            # as stream items, three times each
            items = [item async for item in a.items(value, 3)]
            assert len(items) == 3
            for item in items:
                same(value, item, f"{name} item")
            # actor -> actor: a passes it to b (a reference in a message) and back
            same(value, await a.relay(b, "echo", value), f"{name} relay")
            relayed = await a.relay_stream(b, value, 2)
            for item in relayed:
                same(value, item, f"{name} relayed item")
        # several tensors as positional and keyword arguments of one call
        x, y = torch.randn(300, 300), torch.arange(100_000)
        args, kwargs = await a.echo_many(x, [y, y[::2]], k=x.t(), z=T.OutOfBand(b"q" * 70_000))
        same((x, [y, y[::2]]), args)
        same(x.t(), kwargs["k"])
        assert bytes(kwargs["z"]) == b"q" * 70_000
        # OutOfBand arrives as a memoryview holding the bytes
        payload = os.urandom(300 * KiB)
        digest, size, kind = await a.digest(T.OutOfBand(payload))
        import hashlib

        assert (digest, size, kind) == (
            hashlib.sha256(payload).hexdigest(),
            len(payload),
            "memoryview",
        )
        # made in the actor: results and stream items
        made = await a.make("big")
        same(torch.arange(1 << 20, dtype=torch.float32), made)
        async for item in a.make_stream(4):
            same(torch.full((300, 300), float(item["i"])), item["t"])
            same(torch.arange(item["i"] + 1), item["v"])


async def _check_transport(transport: str) -> None:
    opts = pyisolate.SpawnOptions(env={"PYISOLATE_TRANSPORT": transport})
    async with pyisolate.Runtime(options=opts) as rt:
        a = await rt.spawn(Tensors, name="a")
        b = await rt.spawn(Tensors, name="b")
        t = torch.randn(512, 512)  # 1 MiB: far above the inline threshold
        info = await a.inspect(t)
        assert info["sum"] == pytest.approx(float(t.double().sum()))
        target = info["target"]
        if transport == "inline":
            assert target is None and not info["shared"], f"{transport}: {target}"
        elif transport == "shm":
            assert target is not None and target.startswith("/memfd:"), f"{transport}: {target}"
        else:  # an unlinked file in the runtime's private directory
            assert target is not None and target.startswith(f"{rt.directory}/"), (
                f"{transport}: {target}"
            )
            assert target.endswith("(deleted)"), target
        same(t, await a.echo(t))
        same(t.t(), await a.relay(b, "echo", t.t()))
        same([t, t[3]], [item async for item in a.items([t, t[3]], 2)][1])
        back = await a.make("big")
        same(torch.arange(1 << 20, dtype=torch.float32), back)
        if transport == "inline":
            assert storage_inode(back) is None
        else:
            assert T.is_shared(back)
        assert rt.transport.get().override == transport


async def test_each_transport_end_to_end(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each transport forced in turn (host and actors), in one host process:
    a runtime's choice must not leak into the next one's."""
    for transport in ("inline", "shm", "file", "inline"):
        monkeypatch.setenv("PYISOLATE_TRANSPORT", transport)
        await _check_transport(transport)


def _inode(t: Any) -> int:
    ino = storage_inode(t)
    assert ino is not None, "not backed by a shared segment"
    return ino


async def test_zero_copy_and_copy_on_write(anyio_backend: str) -> None:
    async with pyisolate.Runtime() as rt:
        a = await rt.spawn(Tensors, name="a")
        b = await rt.spawn(Tensors, name="b")
        t = T.empty((512, 512), dtype=torch.float32)
        t.fill_(1.0)
        assert T.is_shared(t)
        mine = _inode(t)
        # Re-sent many times: the actor maps the host's own memfd every time.
        for _ in range(10):
            info = await a.inspect(t)
            assert info["inode"] == mine
            assert info["shared"]
        # So writes the owner makes after sending show in what the actor holds
        # (shared memory, as documented), views included.
        await a.hold(t, t[100:])
        t.fill_(7.0)
        assert await a.held_sums() == [7.0 * t.numel(), 7.0 * t[100:].numel()]
        await a.drop()
        # The receiver's writes never reach the sender.
        assert await a.fill(t, -1.0) == -1.0 * t.numel()
        assert torch.all(t == 7.0)
        # Returned untouched: the host gets its own memory back, no copy.
        back = await a.echo(t)
        assert _inode(back) == mine
        assert T.is_shared(back)
        assert back.data_ptr() != t.data_ptr()  # a new mapping of the same memory
        # Returned after writing: the actor's private pages go out as a copy.
        written = await a.fill_and_return(t, 3.0)
        assert _inode(written) != mine
        assert torch.all(written == 3.0)
        assert torch.all(t == 7.0)
        # Actor to actor through the host: b maps the host's memfd too.
        assert (await a.relay(b, "inspect", t))["inode"] == mine
        # An ordinary tensor costs one copy host -> actor; the actor's result
        # is that same segment (no second copy on the way back).
        fresh = torch.ones(512, 512)
        assert storage_inode(fresh) is None
        info, echoed = await a.inspect(fresh), await a.echo(fresh)
        assert info["shared"]
        assert info["inode"] is not None
        assert T.is_shared(echoed)
        assert torch.equal(echoed, fresh)
        # A tensor received by the host is shared: passing it on costs no copy.
        assert (await b.inspect(echoed))["inode"] == _inode(echoed)
        # The host's writes to a received tensor stay private to the host.
        made, actor_inode = await a.make("shared")
        assert _inode(made) == actor_inode
        made.fill_(0.0)
        assert not T.is_shared(made)  # written: would now be copied
        again, _ = await a.make("shared")
        assert float(again.sum()) == float(torch.arange(256 * 1024, dtype=torch.float64).sum())
        # numpy from the allocator: zero-copy as well
        arr = _filled(T.empty_array((300, 300), "float32"))
        assert storage_inode(arr) is not None


async def test_requires_grad(anyio_backend: str) -> None:
    async with pyisolate.Runtime() as rt:
        a = await rt.spawn(Tensors, name="a")
        leaf = torch.randn(300, 300, requires_grad=True)
        (leaf * 2).sum().backward()  # a .grad that must not travel
        info = await a.inspect(leaf)
        assert info["requires_grad"]
        assert info["is_leaf"]
        assert not info["grad_fn"]
        small = torch.ones(3, requires_grad=True)
        # data, not history: the actor's autograd starts from a fresh leaf
        same(torch.full((3,), 2.0), await a.grad(small))
        assert small.grad is None
        back = await a.echo(leaf)
        assert back.requires_grad
        assert back.is_leaf
        assert back.grad is None
        assert torch.equal(back.detach(), leaf.detach())
        param = torch.nn.Parameter(torch.randn(10))
        assert (await a.inspect(param))["type"] == "Tensor"
        # A non-leaf fails in the caller, naming the fix; nothing was sent.
        fds = _fds_outside_pool()
        with pytest.raises(TypeError, match=r"non-leaf.*detach\(\)"):
            await a.echo([torch.randn(300, 300), leaf * 2])
        assert _fds_outside_pool() == fds
        # detached, it goes
        assert (await a.inspect((leaf * 2).detach()))["requires_grad"] is False
        # A non-leaf result fails in the actor and arrives as a TypeError.
        with pytest.raises(TypeError, match=r"non-leaf.*detach\(\)"):
            await a.make("nonleaf")
        assert await a.total(torch.ones(5)) == 5.0  # the actor is fine


async def test_unmovable_objects_raise_in_the_caller(anyio_backend: str) -> None:
    async with pyisolate.Runtime() as rt:
        a = await rt.spawn(Tensors, name="a")
        before = await a.fd_count()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            csr = torch.eye(3).to_sparse_csr()
            quantized = torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.quint8)
        cases = [
            (torch.eye(3).to_sparse(), r"sparse"),
            (csr, r"sparse_csr"),
            (quantized, r"quantized"),
            (torch.empty(3, device="meta"), r"meta"),
            (np.array([object(), 1], dtype=object), r"object"),
        ]
        for value, message in cases:
            # alone, and after tensors that were already exported in the message
            for wrapped in (value, [torch.randn(300, 300), T.empty(100_000), value]):
                with pytest.raises(TypeError, match=message):
                    await a.echo(wrapped)
        with pytest.raises(TypeError, match="sparse"):
            await a.make("sparse")
        assert await a.fd_count() == before  # nothing reached the actor
        assert await a.total(torch.ones(100_000)) == 100_000.0


async def test_actor_killed_while_holding_and_receiving(anyio_backend: str) -> None:
    async with pyisolate.Runtime() as rt:
        a = await rt.spawn(Tensors, name="a")
        b = await rt.spawn(Tensors, name="b")
        shared = T.empty((1 << 20,), dtype=torch.float32)
        shared.fill_(1.0)
        await a.hold(shared, torch.randn(1 << 20), torch.randn(300, 300).t())
        await b.hold(shared, torch.randn(1 << 20))
        pid = rt.process_id(a)
        assert pid is not None
        outcomes: list[BaseException | object] = []

        async def host_sends() -> None:
            try:
                while True:
                    await a.hold(torch.randn(4 << 20), shared[5:])
            except Exception as exc:
                outcomes.append(exc)

        async def actor_sends() -> None:
            try:
                while True:  # b -> host -> a: fds forwarded by the host
                    await b.relay(a, "hold", torch.randn(1 << 20))
            except Exception as exc:
                outcomes.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(host_sends)
            tg.start_soon(actor_sends)
            await anyio.sleep(0.5)
            os.kill(pid, signal.SIGKILL)
        assert len(outcomes) == 2
        # Both callers learn that a died (in whichever order they noticed):
        # b's call failed because its callee died; b is fine, and so is the host.
        assert all(isinstance(o, ActorDiedError) for o in outcomes), outcomes
        assert await b.held_sums() != []
        assert await b.total(shared) == float(1 << 20)
        assert torch.all(shared == 1.0)


def test_host_killed_mid_transfer() -> None:
    """SIGKILL the host while it streams tensors to an actor: the actor goes
    (parent-death signal), nothing lands in /dev/shm, and the next runtime
    sweeps the dead host's directory without touching a live one's."""
    from conftest import descendants, pid_gone

    from pyisolate.actors._rundir import PREFIX, base_dir, sweep_stale

    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        import anyio, torch, pyisolate
        from pyisolate import transport as T
        from transport.transport_actors import Tensors

        async def main():
            async with pyisolate.Runtime() as rt:
                a = await rt.spawn(Tensors, name="a")
                b = await rt.spawn(Tensors, name="b")
                shared = T.empty((1 << 20,), dtype=torch.float32)
                shared.fill_(1.0)
                for i in range(100000):
                    await a.hold(torch.randn(1 << 20), shared)
                    await a.relay(b, "hold", torch.randn(1 << 18))
                    if i % 8 == 7:
                        await a.drop()
                    if i == 3:
                        print(rt.directory, flush=True)

        anyio.run(main)
        """
    )
    shm_before = set(os.listdir("/dev/shm"))
    dirs_before = {p for p in base_dir().iterdir() if p.name.startswith(PREFIX)}
    host = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    family: dict[int, str] = {}
    try:
        line = host.stdout.readline().strip()  # type: ignore[union-attr]
        assert line, host.stderr.read()  # type: ignore[union-attr]
        rundir = Path(line)
        assert rundir.is_dir()
        time.sleep(0.3)  # mid-transfer
        family = descendants(host.pid)
        assert len(family) >= 2, family  # the two actors (and any launcher)
        host.send_signal(signal.SIGKILL)
        host.wait(10)
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        host.stdout.close()  # type: ignore[union-attr]
        host.stderr.close()  # type: ignore[union-attr]
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(pid_gone(p) for p in family):
            time.sleep(0.05)
        assert all(pid_gone(p) for p in family), f"outlived their host: {family}"
    finally:
        for pid in family:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert set(os.listdir("/dev/shm")) - shm_before == set()
    # SIGKILL leaves the directory; the next runtime removes it, and only it.
    assert rundir.exists()

    async def next_runtime() -> None:
        async with pyisolate.Runtime() as live:
            assert not rundir.exists(), "a new runtime sweeps the dead host's directory"
            assert live.directory.is_dir()
            assert sweep_stale() == []  # a live runtime's directory is not touched
            assert live.directory.is_dir()

    anyio.run(next_runtime)
    leftovers = {p for p in base_dir().iterdir() if p.name.startswith(PREFIX)} - dirs_before
    assert leftovers == set()


def _doctor(**env: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "pyisolate", "doctor"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _row(text: str, key: str) -> str:
    for line in text.splitlines():
        if line.startswith(key):
            return line[len(key) :].strip()
    raise AssertionError(f"no {key!r} row in:\n{text}")


def test_doctor_reports_the_transport() -> None:
    env = {"PYISOLATE_TRANSPORT": "", "PYISOLATE_ENABLE_CUDA_IPC": ""}
    text = _doctor(**env)
    shm = _row(text, "/dev/shm")
    assert "free of" in shm or shm == "missing", shm
    cpu = _row(text, "CPU tensor transport")
    if T.check_shm_availability():
        assert cpu.startswith("shm"), cpu
    else:
        assert cpu.startswith("file (fallback"), cpu
    assert "none" in _row(text, "transport override")
    assert _row(text, "CUDA IPC").startswith("disabled")
    assert _row(text, "memfd_create") == "yes"
    text = _doctor(PYISOLATE_TRANSPORT="file", PYISOLATE_ENABLE_CUDA_IPC="1")
    assert _row(text, "transport override") == "file"
    cuda = _row(text, "CUDA IPC")
    if torch.cuda.is_available():
        assert cuda.startswith("ready"), cuda
    else:
        assert "no CUDA device" in cuda, cuda


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")
async def test_cuda_ipc_through_actors(anyio_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA tensors by IPC handle: the producer keeps the storage until every
    consumer released it, and a consumer's death releases what it held."""
    from conftest import eventually

    monkeypatch.setenv("PYISOLATE_ENABLE_CUDA_IPC", "1")
    opts = pyisolate.SpawnOptions(env={"PYISOLATE_ENABLE_CUDA_IPC": "1"})
    async with pyisolate.Runtime(options=opts) as rt:
        cuda = rt.transport.get().transports["cuda_ipc"]
        a = await rt.spawn(Tensors, name="a")
        b = await rt.spawn(Tensors, name="b")
        t = torch.arange(1 << 20, dtype=torch.float32, device="cuda")
        expected = float(t.double().sum())
        assert await a.cuda_sum(t) == (expected, "cuda:0")
        assert await a.cuda_sum(t[1:].view(1023, 1024)) == (expected, "cuda:0")
        same(t.cpu(), (await a.echo(t)).cpu())

        def held(ref: pyisolate.ActorRef) -> int:
            rt.transport.flush()
            return int(cuda.held_count(ref.id))

        # Nothing is held once the consumer dropped what it received.
        await eventually(lambda: held(a) == 0, timeout=10)
        # A consumer holds it: the producer keeps the storage after dropping its own.
        assert await a.cuda_hold(t) == 1
        assert held(a) == 1
        del t
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        assert await a.held_sums() == [expected]  # still valid memory in the actor
        assert held(a) == 1
        # Released by the consumer: the producer lets go.
        await a.drop()
        await eventually(lambda: held(a) == 0, timeout=10)
        # A consumer's death releases what it held.
        u = torch.ones(1 << 20, device="cuda")
        await b.cuda_hold(u)
        assert held(b) == 1
        pid = rt.process_id(b)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await eventually(lambda: held(b) == 0, timeout=10)
        assert float(u.sum()) == float(1 << 20)
