"""Escapes attempted by actors spawned through the runtime, not by scripts.

The runtime's default (AUTO) must give these actors the full sandbox here, and
every escape must fail there. Positive controls keep the tests honest: calls,
streams and tensors still work inside the sandbox, and the harmless escapes
(reading a host file, the secret, a TCP connect...) succeed from the same
actor class spawned with ``SandboxMode.DISABLED``. Destructive attempts
(writing /proc/sys, remounting) are never tried without a sandbox: the
unsandboxed control runs as the host's root.

Most tests run on asyncio only (the sandbox does not care about the backend);
the positive controls run on both.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import pyisolate
from pyisolate import SandboxUnavailableError
from pyisolate.sandbox import (
    Detection,
    ResourceLimits,
    RestrictionModel,
    SandboxMode,
    SandboxPolicy,
    SandboxWarning,
    build_launch,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.sandbox, pytest.mark.anyio, pytest.mark.usefixtures("full_sandbox")]

HERE = Path(__file__).resolve().parent
PROBER = "sandbox_actors:Prober"
IS_ROOT = os.geteuid() == 0
SECRET_NAME = "PYISOLATE_TEST_SECRET"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def spawn_pair(rt: Any, policy: SandboxPolicy | None = None) -> tuple[Any, Any]:
    """The same prober twice: sandboxed (AUTO, asserted full) and unsandboxed."""
    boxed = await rt.spawn(PROBER, sandbox=policy or SandboxMode.AUTO)
    assert rt.isolation(boxed) == "full"
    control = await rt.spawn(PROBER, sandbox=SandboxMode.DISABLED)
    assert rt.isolation(control) == "none"
    return boxed, control


@pytest.fixture
def host_file() -> Iterator[Path]:
    """A world-readable file in the host's real /tmp."""
    fd, name = tempfile.mkstemp(prefix="pyi-host-", dir="/tmp")
    os.write(fd, b"host data")
    os.close(fd)
    os.chmod(name, 0o644)
    yield Path(name)
    os.unlink(name)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A world-writable host directory: only the sandbox can keep an actor out."""
    path = Path(tempfile.mkdtemp(prefix="pyi-open-"))
    path.chmod(0o777)
    (path / "data.txt").write_text("host data")
    (path / "data.txt").chmod(0o666)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


# -- positive controls ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_default_is_full_and_actors_still_work(rt: Any) -> None:
    ref = await rt.spawn(PROBER)
    assert rt.isolation(ref) == "full"
    who = await ref.whoami()
    assert who["pid"] != rt.process_id(ref)  # its own pid namespace
    assert rt.process_id(ref) is not None
    assert rt.process_id(ref) > 0
    if IS_ROOT:  # an unprivileged uid of its own
        assert who["uid"] == who["gid"] >= 1_700_000_000
    assert await ref.echo({"a": [1, 2.5, b"x"]}) == {"a": [1, 2.5, b"x"]}
    assert [i async for i in ref.count(5)] == [0, 1, 2, 3, 4]
    torch = pytest.importorskip("torch")  # optional: the rest needs no tensors
    for size in (1000, 1 << 18):  # inline, and through shared memory (1 MiB)
        tensor = torch.arange(size, dtype=torch.float32)
        doubled = await ref.double(tensor)
        assert torch.equal(doubled, tensor * 2)


async def test_required_mode_gives_full_isolation(rt: Any) -> None:
    ref = await rt.spawn(PROBER, sandbox=SandboxMode.REQUIRED)
    assert rt.isolation(ref) == "full"
    assert (await ref.privileges())["no_new_privs"] == "1"


# -- filesystem -------------------------------------------------------------------


async def test_cannot_read_host_files(rt: Any, host_file: Path) -> None:
    boxed, control = await spawn_pair(rt)
    home = Path.home()
    home_files = [str(p) for p in sorted(home.iterdir()) if p.is_file()][:3]
    paths = ["/etc/shadow", str(host_file), *home_files]
    assert set((await boxed.read_files(paths)).values()) == {"ENOENT"}
    # Only what the interpreter needs is visible in the home (it may live there).
    interpreter_parts = {
        *Path(sys.executable).parts,
        *Path(os.path.realpath(sys.executable)).parts,
        *Path(sys.base_prefix).parts,  # a virtual environment's base interpreter
        *Path(sys.prefix).parts,
    }
    visible_home = await boxed.list_dir(str(home))
    for name in visible_home if isinstance(visible_home, list) else []:
        assert name in interpreter_parts, visible_home
    # Positive control: the same reads work without the sandbox.
    assert await control.read_text(str(host_file)) == "host data"
    if IS_ROOT:
        assert (await control.read_files(["/etc/shadow"]))["/etc/shadow"] == "ok"


async def test_read_only_binds_cannot_be_written_or_remounted(rt: Any, open_dir: Path) -> None:
    boxed, control = await spawn_pair(rt, SandboxPolicy(ro_binds=(str(open_dir),)))
    # The bind is there (positive control), read-only, and stays so.
    assert await boxed.read_text(str(open_dir / "data.txt")) == "host data"
    code_dir = str(HERE)  # the actor's own code directory, bound by the runtime
    writes = await boxed.write_files([str(open_dir / "new"), f"{code_dir}/escaped.txt"])
    assert writes == {str(open_dir / "new"): "EROFS", f"{code_dir}/escaped.txt": "EROFS"}
    for path in (str(open_dir), code_dir):
        res = await boxed.remount(path)
        assert res["options"].split(",")[0] == "ro", res
        assert (res["remount_rw"], res["umount"], res["bind_over"]) == ("EPERM",) * 3, res
        assert res["options_after"] == res["options"]
    assert sorted(p.name for p in open_dir.iterdir()) == ["data.txt"]
    assert not (HERE / "escaped.txt").exists()
    # Positive control: the directory really is writable from outside a sandbox.
    assert (await control.write_files([str(open_dir / "new")])) == {str(open_dir / "new"): "ok"}


async def test_proc_sys_is_read_only(rt: Any) -> None:
    boxed = await rt.spawn(PROBER)
    assert rt.isolation(boxed) == "full"
    before = Path("/proc/sys/kernel/hostname").read_text()
    assert (await boxed.read_text("/proc/sys/kernel/hostname")) == "pyisolate\n"
    res = await boxed.proc_sys_write()
    assert res["kernel.hostname"] in ("EROFS", "EACCES"), res
    assert res["vm.drop_caches"] in ("EROFS", "EACCES"), res
    assert res["sysrq"] in ("EROFS", "EACCES", "ENOENT"), res
    assert Path("/proc/sys/kernel/hostname").read_text() == before


async def test_leaves_nothing_in_host_tmp(rt: Any) -> None:
    boxed, control = await spawn_pair(rt)
    tag = uuid.uuid4().hex
    real_tmp = Path("/tmp") / f"pyi-escape-{tag}"
    session_tmp = Path(tempfile.gettempdir()) / f"pyi-escape-{tag}"
    res = await boxed.write_files([str(real_tmp), str(session_tmp)])
    assert res[str(real_tmp)] == "ok"  # its private /tmp is writable...
    assert not real_tmp.exists()  # ...and private
    assert not session_tmp.exists()
    # Positive control: an unsandboxed actor's file does reach the host.
    control_file = Path("/tmp") / f"pyi-escape-control-{tag}"
    try:
        assert (await control.write_files([str(control_file)]))[str(control_file)] == "ok"
        assert control_file.read_text() == "escaped"
    finally:
        control_file.unlink(missing_ok=True)


# -- privileges -------------------------------------------------------------------


async def test_no_capabilities_no_new_privs_no_namespaces(rt: Any) -> None:
    boxed, control = await spawn_pair(rt)
    res = await boxed.privileges()
    assert res["caps"] == dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), 0)
    assert res["no_new_privs"] == "1"
    assert res["seccomp"] == "2"
    if IS_ROOT:  # real, effective, saved and filesystem ids: all the actor's own
        assert len(set(res["uid"])) == 1
        assert int(res["uid"][0]) >= 1_700_000_000
        assert res["gid"] == res["uid"]
        assert res["groups"] == ""
    assert await boxed.new_namespaces() == {"user": "EPERM", "mount": "EPERM"}
    # Positive control: the parsing and the unshare attempts can see success.
    if IS_ROOT:
        plain = await control.privileges()
        assert plain["caps"]["CapEff"] != 0
        assert plain["no_new_privs"] == "0"
        assert await control.new_namespaces() == {"user": "ok", "mount": "ok"}


# -- network ------------------------------------------------------------------------


@contextlib.contextmanager
def listener(family: int, address: Any) -> Iterator[socket.socket]:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind(address)
        sock.listen(8)
        yield sock
    finally:
        sock.close()


def arrived(sock: socket.socket, wait: float) -> bytes | None:
    """What a connection made to ``sock`` sent, or None if none came."""
    sock.settimeout(wait)
    try:
        conn, _ = sock.accept()
    except (TimeoutError, BlockingIOError):
        return None
    with conn:
        conn.settimeout(2)
        return conn.recv(64)


async def test_no_network_to_host_loopback_or_unix_sockets(rt: Any) -> None:
    boxed, control = await spawn_pair(rt)
    sock_dir = Path(tempfile.mkdtemp(prefix="pyi-sock-"))
    sock_dir.chmod(0o777)
    sock_file = str(sock_dir / "host.sock")
    abstract = f"\0pyisolate-test-{uuid.uuid4().hex}"
    try:
        with (
            listener(socket.AF_INET, ("127.0.0.1", 0)) as tcp,
            listener(socket.AF_UNIX, sock_file) as unix_file,
            listener(socket.AF_UNIX, abstract) as unix_abstract,
        ):
            os.chmod(sock_file, 0o666)
            port = tcp.getsockname()[1]
            assert await boxed.connect_tcp("127.0.0.1", port, b"boxed") == "ECONNREFUSED"
            assert await boxed.connect_unix(abstract.encode(), b"boxed") == "ECONNREFUSED"
            assert await boxed.connect_unix(sock_file, b"boxed") == "ENOENT"
            for sock in (tcp, unix_abstract, unix_file):
                assert arrived(sock, 0.05) is None
            # Positive controls: each one is reachable without a sandbox.
            assert await control.connect_tcp("127.0.0.1", port, b"tcp") == "ok"
            assert arrived(tcp, 2) == b"tcp"
            assert await control.connect_unix(abstract.encode(), b"abstract") == "ok"
            assert arrived(unix_abstract, 2) == b"abstract"
            assert await control.connect_unix(sock_file, b"file") == "ok"
            assert arrived(unix_file, 2) == b"file"
    finally:
        with contextlib.suppress(OSError):
            os.unlink(sock_file)
        sock_dir.rmdir()


# -- processes, IPC, environment ----------------------------------------------------


async def test_cannot_see_or_signal_host_processes(rt: Any) -> None:
    boxed, control = await spawn_pair(rt)
    me = os.getpid()
    res = await boxed.processes(me)
    assert me not in res["pids"]
    assert len(res["pids"]) <= 3, res["cmdlines"]  # bwrap's init, the actor (and a helper)
    assert rt.process_id(boxed) not in res["pids"]  # its own host pid: another number
    assert (res["signal0"], res["sigcont"], res["pidfd"]) == ("ESRCH",) * 3
    assert res["proc_entry"] == "ENOENT"
    plain = await control.processes(me)
    assert me in plain["pids"]
    assert plain["signal0"] == "ok"


@pytest.fixture
def host_shm() -> Iterator[int]:
    """A world-accessible SysV shared-memory segment in the host; its key."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmget.restype = ctypes.c_int
    libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
    for _ in range(10):
        key = int.from_bytes(os.urandom(4), "little") & 0x3FFFFFFF or 1
        shmid = libc.shmget(key, 4096, 0o1000 | 0o2000 | 0o666)  # IPC_CREAT | IPC_EXCL
        if shmid >= 0:
            break
    else:
        pytest.skip(f"shmget failed: errno {ctypes.get_errno()}")
    try:
        yield key
    finally:
        libc.shmctl(shmid, 0, None)  # IPC_RMID


async def test_cannot_reach_host_sysv_ipc(rt: Any, host_shm: int) -> None:
    boxed, control = await spawn_pair(rt)
    assert await boxed.sysv_shm(host_shm) == {"shmget": "ENOENT", "listed": False}
    assert await control.sysv_shm(host_shm) == {"shmget": "ok", "listed": True}


async def test_host_environment_secret_does_not_leak(
    rt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv(SECRET_NAME, secret)
    boxed, control = await spawn_pair(rt)
    assert await boxed.environment(SECRET_NAME) == {"value": None, "in_proc_environ": []}
    assert (await control.environment(SECRET_NAME))["value"] == secret


# -- resources ----------------------------------------------------------------------


async def test_fork_bomb_is_bounded(rt: Any) -> None:
    # The limit is per uid, and each actor has its own: no room for others needed.
    limit = 128
    ref = await rt.spawn(PROBER, sandbox=SandboxPolicy(limits=ResourceLimits(processes=limit)))
    assert rt.isolation(ref) == "full"
    res = await ref.fork_until_refused(limit + 1000)
    assert res["limits"] == [str(limit), str(limit)]
    assert res["error"] == "EAGAIN", res
    assert 0 < res["forked"] < limit, res
    assert await ref.echo("alive") == "alive"


# -- tensor memory ------------------------------------------------------------------


@pytest.mark.slow
async def test_cannot_open_another_actors_tensor_memory(rt: Any) -> None:
    torch = pytest.importorskip("torch")

    holder = await rt.spawn(PROBER, name="holder")
    snoop = await rt.spawn(PROBER, name="snoop")
    assert rt.isolation(holder) == rt.isolation(snoop) == "full"
    magic = os.urandom(8)
    value = int.from_bytes(magic, "little", signed=True)
    # 1 MiB: above the inline threshold, so it travels (and stays) in a memfd.
    assert await holder.hold(torch.full((1 << 17,), value, dtype=torch.int64)) == value
    holder_pid = rt.process_id(holder)
    assert holder_pid is not None
    # Positive control: the search finds the tensor in the holder's own memory.
    own = await holder.find_bytes(magic, [])
    assert own["found"], own
    res = await snoop.find_bytes(magic, [holder_pid])
    assert res["found"] == [], res
    assert res["shm_entries"] == []
    assert holder_pid not in res["visible_pids"]
    for what in ("map_files", "fd", "mem"):
        assert res["attempts"][f"/proc/{holder_pid}/{what}"] == "ENOENT", res["attempts"]
    # Positive control: without a sandbox the same search reaches it (as root).
    if IS_ROOT:
        control = await rt.spawn(PROBER, sandbox=SandboxMode.DISABLED)
        plain = await control.find_bytes(magic, [holder_pid], scan_all=False)
        assert plain["found"], plain
    await holder.drop()


# -- lifetime -------------------------------------------------------------------------

HOST_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    import anyio, pyisolate

    async def main():
        async with pyisolate.Runtime() as rt:
            ref = await rt.spawn("sandbox_actors:Prober")
            print(rt.isolation(ref), rt.process_id(ref), flush=True)
            await anyio.sleep(120)

    anyio.run(main)
    """
)


def _stat(pid: int) -> list[str]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text[text.rfind(")") + 2 :].split()


def pid_gone(pid: int) -> bool:
    fields = _stat(pid)
    return not fields or fields[0] in ("Z", "X")


def _descendants(root: int) -> set[int]:
    parents = {
        int(p): int(f[1]) for p in os.listdir("/proc") if p.isdigit() and (f := _stat(int(p)))
    }
    found: set[int] = set()
    todo = [root]
    while todo:
        parent = todo.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                todo.append(pid)
    return found


def test_actor_dies_with_a_killed_host(tmp_path: Path) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="pyi-k-", dir="/tmp"))  # short: a socket path
    env = {**os.environ, "PYISOLATE_RUNTIME_DIR": str(run_dir)}
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT.format(here=str(HERE))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert host.stdout is not None
        line = host.stdout.readline().decode().split()
        assert len(line) == 2, (line, host.stderr.read().decode() if host.poll() else "")
        isolation, actor_pid = line[0], int(line[1])
        assert isolation == "full"
        assert not pid_gone(actor_pid)
        family = _descendants(host.pid)
        assert actor_pid in family
        host.send_signal(signal.SIGKILL)
        host.wait(5)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not all(map(pid_gone, family)):
            time.sleep(0.02)
        alive = [pid for pid in family if not pid_gone(pid)]
        assert alive == [], f"outlived the host: {alive}"
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        for stream in (host.stdout, host.stderr):
            if stream is not None:
                stream.close()
        subprocess.run(["rm", "-rf", str(run_dir)], check=False)


# -- REQUIRED without a full sandbox -------------------------------------------------

APPARMOR = Detection(
    RestrictionModel.APPARMOR,
    "degraded",
    detail="bwrap: setting up uid map: Permission denied",
    bwrap="/usr/bin/bwrap",
)
MISSING = Detection(RestrictionModel.BWRAP_MISSING, "none")


def test_build_launch_required_refuses_with_remediation() -> None:
    for det in (APPARMOR, MISSING):
        with pytest.raises(SandboxUnavailableError) as info:
            build_launch(
                SandboxPolicy(),
                SandboxMode.REQUIRED,
                [sys.executable, "-c", "pass"],
                env={},
                ro_binds=[],
                rw_binds=[],
                socket_paths=[],
                pass_fds=[],
                detection=det,
            )
        text = str(info.value)
        assert det.model.remediation
        assert det.model.remediation in text
        assert det.model.summary in text


async def test_runtime_required_refuses_and_auto_degrades_loudly(
    rt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyisolate.sandbox._launch as launch

    monkeypatch.setattr(launch, "detect", lambda: APPARMOR)
    with pytest.raises(SandboxUnavailableError, match="apparmor_parser"):
        await rt.spawn(PROBER, sandbox=SandboxMode.REQUIRED)
    monkeypatch.setattr(launch, "detect", lambda: MISSING)
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap"):
        await rt.spawn(PROBER, sandbox=SandboxMode.REQUIRED)
    # AUTO runs anyway, but says so, and the runtime reports the truth.
    with pytest.warns(SandboxWarning, match="WITHOUT a sandbox"):
        ref = await rt.spawn(PROBER)
    assert rt.isolation(ref) == "none"
    assert await ref.echo(1) == 1
    monkeypatch.undo()
    # The refused spawns left the runtime usable.
    again = await rt.spawn(PROBER, sandbox=SandboxMode.REQUIRED)
    assert rt.isolation(again) == "full"
    assert len(rt.actors()) == 2


def test_public_names() -> None:
    assert pyisolate.SandboxMode is SandboxMode
    assert issubclass(SandboxUnavailableError, pyisolate.SandboxError)


# -- known bug: a main script's whole directory is bound --------------------------

MAIN_SCRIPT = textwrap.dedent(
    """
    import anyio, pyisolate

    class Reader(pyisolate.Actor):
        def read(self, path):
            try:
                with open(path) as f:
                    return f.read()
            except OSError as exc:
                return exc.strerror

    async def main():
        async with pyisolate.Runtime() as rt:
            ref = await rt.spawn(Reader)
            print(rt.isolation(ref), await ref.read({path!r}), flush=True)

    if __name__ == "__main__":
        anyio.run(main)
    """
)


def test_main_script_in_tmp_does_not_expose_host_tmp(host_file: Path) -> None:
    fd, name = tempfile.mkstemp(prefix="pyi-main-", suffix=".py", dir="/tmp")
    os.close(fd)
    script = Path(name)
    script.write_text(MAIN_SCRIPT.format(path=str(host_file)))
    script.chmod(0o644)  # the sandboxed actor must be able to read it
    run_dir = Path(tempfile.mkdtemp(prefix="pyi-rd-", dir="/var/tmp"))  # not under /tmp
    try:
        result = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYISOLATE_RUNTIME_DIR": str(run_dir)},
            cwd="/",
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split(maxsplit=1) == ["full", "No such file or directory\n"]
    finally:
        script.unlink()
        subprocess.run(["rm", "-rf", str(run_dir)], check=False)
