"""Who keeps CUDA memory alive, and until when: the producer-lifetime rules.

The rules (see ``pyisolate.transport._cuda_ipc``):

1. a consumer killed while it holds a tensor releases it: the producer's hold
   for it is dropped and the memory is freed;
2. a producer that exits while consumers hold its tensors does not crash
   them: their calls go on, and reading the tensor gives its values or fails
   with an error (never a dead consumer);
3. nothing stays allocated on the GPU once the Runtime has exited (the host's
   own allocations, and no actor process left on the GPU);
4. without ``PYISOLATE_ENABLE_CUDA_IPC=1`` there is no CUDA IPC: a CUDA tensor
   goes by a CPU transport, is copied, and arrives on its device.

The tests marked ``cuda`` play them on a real GPU (skipped elsewhere, with the
reason); each rule that the fake backend or a CPU transport can play has a CPU
twin here that runs everywhere. On the device, ``scripts/gpu-check`` runs them.

``PYISOLATE_GPU_TEST_SANDBOX=disabled`` runs the GPU tests' actors
unsandboxed (``scripts/gpu-check`` sets it when a sandboxed actor cannot see
the GPU there, and says so in its report); the default is the runtime's AUTO.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
from typing import TYPE_CHECKING, Any

import pytest

import pyisolate
from pyisolate import SandboxMode, SandboxPolicy
from pyisolate.errors import TransportError
from pyisolate.transport import lowlevel as L
from pyisolate.transport.testing import FakeCudaIpcBackend, region_of

from .cuda_actors import Holder

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.anyio

ENABLE = "PYISOLATE_ENABLE_CUDA_IPC"
MiB = 1 << 20


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


CUDA = _cuda_available()
# The GPU tests run on asyncio alone (the protocol does not depend on the event
# loop, and device time is short); the CPU twins run on both backends.


def gpu_sandbox() -> Any:
    """The sandbox setting for the GPU tests' actors (see the module docstring)."""
    mode = os.environ.get("PYISOLATE_GPU_TEST_SANDBOX", "auto").lower()
    if mode not in ("auto", "disabled"):
        raise ValueError("PYISOLATE_GPU_TEST_SANDBOX must be 'auto' or 'disabled'")
    return (
        SandboxMode.DISABLED if mode == "disabled" else SandboxMode.AUTO,
        SandboxPolicy(gpu=True),
    )


@pytest.fixture(scope="module", autouse=True)
def _warm_cuda() -> Iterator[None]:
    """CUDA opens device fds and torch creates its IPC reference-counter file
    (/dev/shm/torch_*) on first use, for the life of the process: made here,
    before the leak checkers' snapshots, they are not counted as a test's."""
    if CUDA:
        import torch

        torch.cuda.init()
        x = torch.ones(1, device="cuda")
        x.untyped_storage()._share_cuda_()
        del x
        torch.cuda.synchronize()
    return


def _cuda(rt: pyisolate.Runtime) -> L.CudaIpcTransport:
    t = rt.transport.get().transports["cuda_ipc"]
    assert isinstance(t, L.CudaIpcTransport)
    return t


def _held(rt: pyisolate.Runtime, ref: pyisolate.ActorRef) -> int:
    rt.transport.flush()
    return int(_cuda(rt).held_count(ref.id))


def _host_allocated() -> int:
    """The host's own GPU allocations once everything it dropped is freed
    (torch keeps a block shared by IPC in limbo until its consumers let go)."""
    import torch

    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.ipc_collect()
    return int(torch.cuda.memory_allocated())


def _gpu_pids() -> set[int] | None:
    """Pids with a context on the GPU, per nvidia-smi; None where it cannot say."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-compute-apps=pid", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {int(line) for line in out.split() if line.strip().isdigit()}


def _kill(rt: pyisolate.Runtime, ref: pyisolate.ActorRef) -> None:
    pid = rt.process_id(ref)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


# -- CPU twins: the same rules, with the fake backend or a CPU transport -------------------


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCudaIpcBackend:
    """The host's CUDA IPC transport gets a fake backend (fake device memory in
    the host); CUDA IPC is enabled for the host and the actors it starts."""
    backend = FakeCudaIpcBackend()
    monkeypatch.setattr("pyisolate.transport._cuda_ipc.TorchCudaIpcBackend", lambda: backend)
    monkeypatch.setenv(ENABLE, "1")
    return backend


async def test_consumer_killed_or_releasing_lets_the_producer_go_fake(
    rt: pyisolate.Runtime, fake_cuda: FakeCudaIpcBackend
) -> None:
    from conftest import eventually

    killed = await rt.spawn(Holder, name="killed")
    alive = await rt.spawn(Holder, name="alive")
    session = rt.transport.get()
    cuda = _cuda(rt)
    session.export(cuda, region_of(b"k" * 64, device="fake"), peer=killed.id)
    token = session.export(cuda, region_of(b"a" * 64, device="fake"), peer=alive.id).handle["tok"]
    assert _held(rt, killed) == 1
    assert _held(rt, alive) == 1
    _kill(rt, killed)
    await eventually(lambda: _held(rt, killed) == 0, timeout=10)
    # Positive control: a consumer that lives keeps its hold...
    await alive.pid()
    assert _held(rt, alive) == 1
    # ... until it releases it, through the runtime's transport messages.
    await alive.release_cuda_tokens([token])
    await eventually(lambda: _held(rt, alive) == 0, timeout=10)


async def test_runtime_exit_drops_every_hold_fake(fake_cuda: FakeCudaIpcBackend) -> None:
    async with pyisolate.Runtime() as rt:
        ref = await rt.spawn(Holder, name="holder")
        session = rt.transport.get()
        cuda = _cuda(rt)
        session.export(cuda, region_of(b"h" * 64, device="fake"), peer=ref.id)
        assert cuda.held_count(ref.id) == 1
    assert cuda.held_count() == 0
    with pytest.raises(TransportError, match="closed"):
        session.export(cuda, region_of(b"h", device="fake"), peer=ref.id)


@pytest.mark.slow  # two actors import torch
async def test_producer_killed_leaves_its_consumer_running_cpu(rt: pyisolate.Runtime) -> None:
    """The CPU twin of rule 2: what a consumer received from a dead producer
    (shared memory, actor to actor) stays readable, and the consumer answers."""
    pytest.importorskip("torch")
    from conftest import eventually

    producer = await rt.spawn(Holder, name="producer")
    consumer = await rt.spawn(Holder, name="consumer")
    await producer.make_shared(MiB // 4, 3.0)
    got = await producer.give_made(consumer)
    assert got == {"device": "cpu", "sum": 3.0 * (MiB // 4)}
    _kill(rt, producer)
    await eventually(lambda: rt.process_id(producer) is None, timeout=10)
    assert await consumer.held_sums() == [3.0 * (MiB // 4)]
    assert await consumer.drop() == 0


async def test_cuda_ipc_switch_reaches_actors_only_when_set(
    rt: pyisolate.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule 4 on the CPU: unset, a CUDA tensor is sent by a CPU transport and
    the actor does not have the switch; set, CUDA IPC is chosen and the actor
    has it (the switch must mean the same on both sides)."""
    monkeypatch.delenv(ENABLE, raising=False)
    off = await rt.spawn(Holder, name="off")
    assert await off.env(ENABLE) is None
    session = rt.transport.get()
    assert session.choose("cuda:0", 64 * MiB, off.id).name == "shm"
    monkeypatch.setenv(ENABLE, "1")
    on = await rt.spawn(Holder, name="on")
    assert await on.env(ENABLE) == "1"
    assert session.choose("cuda:0", 64 * MiB, on.id).name == "cuda_ipc"


# -- on a real GPU -------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.skipif(not CUDA, reason="needs an NVIDIA GPU with CUDA (torch.cuda unavailable)")
@pytest.mark.cuda
async def test_consumer_killed_while_holding_a_cuda_tensor_releases_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch
    from conftest import eventually

    monkeypatch.setenv(ENABLE, "1")
    base = _host_allocated()
    async with pyisolate.Runtime(sandbox=gpu_sandbox()) as rt:
        killed = await rt.spawn(Holder, True, name="killed")
        alive = await rt.spawn(Holder, True, name="alive")
        t = torch.full((64 * MiB // 4,), 2.0, device="cuda")
        u = torch.full((64 * MiB // 4,), 3.0, device="cuda")
        assert await killed.hold(t) == {"device": "cuda:0", "sum": 2.0 * t.numel()}
        assert await alive.hold(u) == {"device": "cuda:0", "sum": 3.0 * u.numel()}
        assert _held(rt, killed) == 1
        assert _held(rt, alive) == 1
        del t, u  # the host's own references: the holds keep the memory
        assert _host_allocated() >= base + 128 * MiB
        _kill(rt, killed)
        await eventually(lambda: _held(rt, killed) == 0, timeout=10)
        # Freed: the killed consumer's 64 MiB (torch's own reference count
        # for it can no longer be decremented by the dead process).
        await eventually(lambda: _host_allocated() <= base + 64 * MiB, timeout=10)
        # Positive control: the live consumer still reads what it holds.
        assert await alive.held_sums() == [3.0 * (64 * MiB // 4)]
        assert _held(rt, alive) == 1
        await alive.drop()
        await eventually(lambda: _held(rt, alive) == 0, timeout=10)
        await eventually(lambda: _host_allocated() <= base, timeout=10)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.skipif(not CUDA, reason="needs an NVIDIA GPU with CUDA (torch.cuda unavailable)")
@pytest.mark.cuda
async def test_producer_exit_does_not_crash_its_consumers(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import eventually

    monkeypatch.setenv(ENABLE, "1")
    async with pyisolate.Runtime(sandbox=gpu_sandbox()) as rt:
        producer = await rt.spawn(Holder, True, name="producer")
        consumer = await rt.spawn(Holder, True, name="consumer")
        bystander = await rt.spawn(Holder, True, name="bystander")
        await producer.make(MiB, 5.0)
        assert await producer.give_made(consumer) == {"device": "cuda:0", "sum": 5.0 * MiB}
        _kill(rt, producer)
        await eventually(lambda: rt.process_id(producer) is None, timeout=10)
        # The consumer lives on: reading the memory of a dead producer gives its
        # values or an error it can catch, never the consumer's death.
        try:
            sums = await consumer.held_sums()
        except pyisolate.ActorDiedError:
            raise AssertionError("the consumer died with the producer") from None
        except pyisolate.RemoteError as exc:
            assert str(exc), "the error must say what failed"
        else:
            assert sums in ([5.0 * MiB], [])
        assert await consumer.drop() == 0
        assert await consumer.pid() == await consumer.pid()
        # Positive control: an actor that never touched the producer's memory.
        assert await bystander.drop() == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.skipif(not CUDA, reason="needs an NVIDIA GPU with CUDA (torch.cuda unavailable)")
@pytest.mark.cuda
async def test_no_gpu_memory_left_after_the_runtime_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setenv(ENABLE, "1")
    before_pids = _gpu_pids()
    base = _host_allocated()
    actor_pids: list[int] = []
    t = torch.full((16 * MiB // 4,), 1.0, device="cuda")
    async with pyisolate.Runtime(sandbox=gpu_sandbox()) as rt:
        a = await rt.spawn(Holder, True, name="a")
        b = await rt.spawn(Holder, True, name="b")
        actor_pids = [p for p in (rt.process_id(a), rt.process_id(b)) if p is not None]
        await a.hold(t)
        await a.hold(t)  # the same storage twice: two exports, one mapping
        await b.hold(t[1:])
        back = await a.doubled(t)  # a produces; the host consumes
        assert back.is_cuda
        assert float(back[0]) == 2.0
        still = await b.doubled(t)  # kept by the host past the runtime's exit
    del t, back
    assert float(still.sum(dtype=torch.float64)) == 2.0 * (16 * MiB // 4)
    del still
    assert _host_allocated() <= base, "the host still holds GPU memory it sent or received"
    after = _gpu_pids()
    if before_pids is not None and after is not None:
        assert not (after & set(actor_pids)), f"actor processes still on the GPU: {after}"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.skipif(not CUDA, reason="needs an NVIDIA GPU with CUDA (torch.cuda unavailable)")
@pytest.mark.cuda
async def test_without_the_switch_a_cuda_tensor_is_copied_and_arrives_on_its_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    monkeypatch.delenv(ENABLE, raising=False)
    async with pyisolate.Runtime(sandbox=gpu_sandbox()) as rt:
        ref = await rt.spawn(Holder, True, name="staged")
        assert await ref.env(ENABLE) is None
        t = torch.full((4 * MiB // 4,), 1.0, device="cuda")
        assert await ref.write(t, 9.0) == "cuda:0"  # arrived on its device...
        assert float(t.max()) == 1.0  # ... as a copy: the host's memory is untouched
        assert _cuda(rt).held_count() == 0
    # Positive control: with the switch, the same write reaches the host's memory.
    monkeypatch.setenv(ENABLE, "1")
    async with pyisolate.Runtime(sandbox=gpu_sandbox()) as rt:
        ref = await rt.spawn(Holder, True, name="ipc")
        assert await ref.env(ENABLE) == "1"
        assert await ref.write(t, 9.0) == "cuda:0"
        assert float(t.min()) == 9.0


def test_the_gpu_sandbox_knob_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYISOLATE_GPU_TEST_SANDBOX", "disabled")
    assert gpu_sandbox()[0] is SandboxMode.DISABLED
    monkeypatch.setenv("PYISOLATE_GPU_TEST_SANDBOX", "sometimes")
    with pytest.raises(ValueError, match="'auto' or 'disabled'"):
        gpu_sandbox()
