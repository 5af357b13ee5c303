"""Resource ceilings by default (issue 8, items 10 and 12), played from inside
real actors: filling /tmp and /dev/shm, fork bombs, daemonised children.

Each hostile move has its positive control beside it: the same move under the
ceiling works. The cgroup tests run where the host can make cgroups (root with
cgroup v2; CI); they skip with the reason elsewhere, while the tmpfs caps and
rlimits are exercised everywhere a sandbox exists.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
from conftest import eventually

import pyisolate
from pyisolate.sandbox import ResourceLimits, SandboxMode, SandboxPolicy
from pyisolate.sandbox._cgroup import cgroup_support

pytestmark = pytest.mark.anyio

CEILINGS = "security.ceiling_actors:Ceilings"
MIB = 1 << 20
SUPPORT = cgroup_support()
needs_cgroup = pytest.mark.skipif(
    not SUPPORT.available, reason=f"no writable cgroup v2 here: {SUPPORT.reason}"
)
needs_controllers = pytest.mark.skipif(
    not {"memory", "pids"} <= SUPPORT.controllers,
    reason=f"cgroup v2 memory/pids controllers not available here: {SUPPORT.describe()}",
)


def _marker() -> str:
    """A ``sleep`` argument no other process on the machine has."""
    return f"{86400 + uuid.uuid4().int % 100000}.{uuid.uuid4().int % 10**9:09d}"


def _marked(marker: str) -> list[int]:
    """Host pids of live processes whose command line carries ``marker``
    (read from /proc; never signalled)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                cmd = fh.read()
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        state = stat[stat.rfind(b")") + 2 :].split()[0]
        if marker.encode() in cmd and state not in (b"Z", b"X"):
            found.append(int(entry.name))
    return found


def _cgroup_dir(pid: int) -> str:
    """The cgroup v2 directory of host pid ``pid``."""
    assert SUPPORT.base is not None
    with open(f"/proc/{pid}/cgroup", encoding="ascii") as fh:
        rel = next(line[3:].strip() for line in fh if line.startswith("0::"))
    mount = SUPPORT.base
    # The base is the hierarchy's root or a directory under it; the kernel
    # reports paths from the root.
    while not os.path.isdir(mount + rel) and mount != "/":
        mount = os.path.dirname(mount)
    return mount + rel


async def _sandboxed(rt: Any, limits: ResourceLimits | None = None, **policy: Any) -> Any:
    kw = {"limits": limits} if limits is not None else {}
    ref = await rt.spawn(CEILINGS, sandbox=SandboxPolicy(**kw, **policy))
    if rt.isolation(ref) == "none":
        await ref.stop()
        pytest.skip("no sandbox on this machine: tmpfs caps and rlimits need one")
    return ref


def _shm_entries() -> set[str]:
    return set(os.listdir("/dev/shm"))


# -- /tmp and /dev/shm count toward the memory ceiling ----------------------------


async def test_tmpfs_writes_stop_at_a_quarter_of_the_memory_ceiling(rt: Any) -> None:
    host_shm = _shm_entries()
    ref = await _sandboxed(rt, ResourceLimits(memory=256 * MIB))
    for mount in ("/tmp", "/dev/shm"):
        assert await ref.tmpfs_size(mount) == 64 * MIB
        path = f"{mount}/fill"
        # Positive control: under the cap, the write lands whole.
        assert await ref.fill(path, 32 * MIB) == {"written": 32 * MIB, "error": "none"}
        await ref.remove(path)
        # Past it: ENOSPC at the cap, not the host's memory.
        res = await ref.fill(path, 96 * MIB)
        assert res["error"] == "ENOSPC", res
        assert 48 * MIB <= res["written"] <= 64 * MIB, res
        await ref.remove(path)
    assert await ref.echo("alive") == "alive"
    assert _shm_entries() == host_shm  # nothing reached the host's /dev/shm


async def test_default_tmpfs_is_capped_not_half_of_ram(rt: Any) -> None:
    ref = await _sandboxed(rt)
    expected = SandboxPolicy().tmpfs_sizes()[0]
    size = await ref.tmpfs_size("/dev/shm")
    assert abs(size - expected) < 2 * MIB  # rounded to pages
    with open("/proc/meminfo") as fh:
        ram = int(fh.readline().split()[1]) * 1024
    assert size <= ram // 4 + 2 * MIB
    # The case: a 512 MiB address-space limit caps each tmpfs at 128 MiB.
    small = await _sandboxed(rt, ResourceLimits(address_space=512 * MIB))
    assert await small.tmpfs_size("/tmp") == 128 * MIB
    res = await small.fill("/tmp/fill", 200 * MIB)
    assert res["error"] == "ENOSPC" and res["written"] <= 128 * MIB, res
    await small.remove("/tmp/fill")


# -- fork bombs --------------------------------------------------------------------


async def _bomb(rt: Any, ref: Any, ceiling: int) -> None:
    marker = _marker()
    res = await ref.spawn_sleepers(ceiling + 200, marker)
    assert res["error"] == "EAGAIN", res
    # Positive control: a few processes start; the count stops below the ceiling
    # (the actor's own threads count toward it too).
    assert 8 <= res["started"] < ceiling, res
    assert len(_marked(marker)) == res["started"]
    assert await ref.echo("alive") == "alive"
    await ref.stop()
    # Everything the actor started is reaped with it.
    await eventually(lambda: not _marked(marker), timeout=10)


async def test_fork_bomb_stops_at_the_default_ceiling(rt: Any) -> None:
    ceiling = ResourceLimits().processes
    assert ceiling is not None
    assert ceiling <= 512
    ref = await _sandboxed(rt)
    await _bomb(rt, ref, ceiling)


async def test_fork_bomb_stops_at_an_explicit_ceiling(rt: Any) -> None:
    ref = await _sandboxed(rt, ResourceLimits(processes=40))
    await _bomb(rt, ref, 40)


# -- a cgroup per actor -------------------------------------------------------------


@needs_cgroup
async def test_each_actor_has_a_cgroup_that_goes_with_it(rt: Any) -> None:
    for mode in (SandboxMode.AUTO, SandboxMode.DISABLED):
        a = await rt.spawn(CEILINGS, sandbox=mode)
        b = await rt.spawn(CEILINGS, sandbox=mode)
        path_a, path_b = _cgroup_dir(rt.process_id(a)), _cgroup_dir(rt.process_id(b))
        assert path_a != path_b
        assert os.path.basename(path_a).startswith("a-")
        assert os.path.dirname(path_a) == os.path.dirname(path_b)  # the host's own
        assert os.path.isdir(path_a)
        await a.stop()
        await eventually(lambda p=path_a: not os.path.exists(p))
        assert os.path.isdir(path_b)  # the sibling's is untouched
        await b.stop()
        await eventually(lambda p=path_b: not os.path.exists(p))


@needs_controllers
async def test_cgroup_limits_are_applied(rt: Any) -> None:
    limits = ResourceLimits(memory=300 * MIB, processes=100, cpus=0.5)
    ref = await rt.spawn(CEILINGS, sandbox=SandboxPolicy(limits=limits))
    path = _cgroup_dir(rt.process_id(ref))

    def read(name: str) -> str:
        with open(os.path.join(path, name)) as fh:
            return fh.read().strip()

    assert read("memory.max") == str(300 * MIB)
    assert read("pids.max") == "100"
    if "cpu" in SUPPORT.controllers:
        assert read("cpu.max") == "50000 100000"
    if os.path.exists(os.path.join(path, "memory.swap.max")):
        assert read("memory.swap.max") == "0"
    # The tmpfs pages are charged to the actor: /dev/shm counts toward memory.max.
    before = int(read("memory.current"))
    assert (await ref.fill("/dev/shm/fill", 40 * MIB))["error"] == "none"
    assert int(read("memory.current")) >= before + 30 * MIB
    # A default actor gets the default ceilings.
    plain = await rt.spawn(CEILINGS)
    plain_path = _cgroup_dir(rt.process_id(plain))
    with open(os.path.join(plain_path, "pids.max")) as fh:
        assert fh.read().strip() == str(ResourceLimits().processes)
    with open(os.path.join(plain_path, "memory.max")) as fh:
        assert int(fh.read()) == ResourceLimits().memory // 4096 * 4096
    await ref.stop()
    await plain.stop()
    await eventually(lambda: not os.path.exists(path) and not os.path.exists(plain_path))


@needs_controllers
async def test_an_actor_past_its_memory_ceiling_dies_alone(rt: Any) -> None:
    hog = await rt.spawn(CEILINGS, sandbox=SandboxPolicy(limits=ResourceLimits(memory=128 * MIB)))
    neighbour = await rt.spawn(CEILINGS)
    # Positive control: under the ceiling the same kind of write works.
    assert (await hog.fill("/tmp/fill", 16 * MIB))["error"] == "none"
    assert await hog.allocate(16 * MIB) == 16 * MIB
    with pytest.raises(pyisolate.ActorDiedError):
        await hog.allocate(256 * MIB)  # past memory.max: the kernel kills the actor
    assert await neighbour.echo("alive") == "alive"


# -- no child outlives its actor (item 12) -----------------------------------------


@needs_cgroup
async def test_unsandboxed_daemonised_grandchild_dies_with_its_actor(rt: Any) -> None:
    ref = await rt.spawn(CEILINGS, sandbox=SandboxMode.DISABLED)
    assert rt.isolation(ref) == "none"
    marker = _marker()
    assert await ref.daemonize(marker) == "ok"
    # Positive control: it did escape the actor's process tree and runs.
    pids = await eventually(lambda: _marked(marker))
    assert len(pids) == 1
    await ref.stop()
    await eventually(lambda: not _marked(marker), timeout=10)


@needs_cgroup
async def test_daemonised_grandchild_dies_with_the_runtime() -> None:
    marker = _marker()
    async with pyisolate.Runtime() as rt:
        ref = await rt.spawn(CEILINGS, sandbox=SandboxMode.DISABLED)
        await ref.daemonize(marker)
        await eventually(lambda: _marked(marker))
        path = _cgroup_dir(rt.process_id(ref))
    # Leaving the runtime stopped the actor and everything it started.
    await eventually(lambda: not _marked(marker), timeout=10)
    await eventually(lambda: not os.path.exists(path))


@needs_cgroup
async def test_killed_unsandboxed_actor_takes_its_daemons_along(rt: Any) -> None:
    ref = await rt.spawn(CEILINGS, sandbox=SandboxMode.DISABLED)
    marker = _marker()
    await ref.daemonize(marker)
    await eventually(lambda: _marked(marker))
    ref.kill()
    await eventually(lambda: not _marked(marker), timeout=10)
