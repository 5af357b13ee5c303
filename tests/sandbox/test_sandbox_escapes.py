"""Escapes that must fail inside the sandbox. Each test runs a plain Python
script under the launcher and, where it makes sense, the same script without a
sandbox as a positive control, so a test that can never fail would show up."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from typing import TYPE_CHECKING

import pytest
from sandbox_helpers import RunScript, run_script

from pyisolate.sandbox import ResourceLimits, SandboxPolicy
from pyisolate.sandbox._plan import sandboxed_plan

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("full_sandbox")]

IS_ROOT = os.geteuid() == 0

PRELUDE = textwrap.dedent(
    """
    import ctypes, errno, json, os, socket, sys
    libc = ctypes.CDLL(None, use_errno=True)
    def err(call):
        try:
            call()
        except OSError as e:
            return errno.errorcode.get(e.errno, str(e.errno))
        return "ok"
    def cerr(ret):
        return "ok" if ret >= 0 else errno.errorcode[ctypes.get_errno()]
    """
)


def script(body: str, **consts: object) -> str:
    header = "".join(f"{k} = {v!r}\n" for k, v in consts.items())
    return PRELUDE + header + textwrap.dedent(body)


@pytest.fixture
def open_dir(tmp_path: Path) -> Path:
    """A world-accessible host directory, so only the sandbox can stop access."""
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o777)
    (d / "data.txt").write_text("host data")
    (d / "data.txt").chmod(0o666)
    return d


READ_OUTSIDE = """
res = {p: err(lambda p=p: open(p).read()) for p in [HOST_FILE, "/etc/shadow", "/root/.bashrc", "/root/.profile"]}
res["root"] = sorted(os.listdir("/root")) if os.path.isdir("/root") else []
print(json.dumps(res))
"""


def test_cannot_read_host_files_outside_binds(run: RunScript, open_dir: Path) -> None:
    code = script(READ_OUTSIDE, HOST_FILE=str(open_dir / "data.txt"))
    res = run(code)
    assert res.pop("root") in ([], [".pyenv"])  # only the interpreter's prefix is visible
    assert set(res.values()) == {"ENOENT"}, res
    control = run(code, sandbox=False)
    assert control[str(open_dir / "data.txt")] == "ok"


WRITE = """
res = {
    "ro_write": err(lambda: open(os.path.join(RO, "new"), "w").close()),
    "ro_read": open(os.path.join(RO, "data.txt")).read(),
    "rw_write": err(lambda: open(os.path.join(RW, "new"), "w").write("x")),
    "remount": cerr(libc.mount(None, RO.encode(), None, 32 | 4096, None)),  # MS_REMOUNT|MS_BIND
    "umount": cerr(libc.umount2(RO.encode(), 2)),  # MNT_DETACH
}
res["ro_write_after"] = err(lambda: open(os.path.join(RO, "new2"), "w").close())
print(json.dumps(res))
"""


def test_cannot_write_through_or_remount_a_read_only_bind(
    run: RunScript, open_dir: Path, tmp_path: Path
) -> None:
    rw = tmp_path / "rw"
    rw.mkdir()
    rw.chmod(0o777)
    res = run(
        script(WRITE, RO=str(open_dir), RW=str(rw)), ro_binds=(str(open_dir),), rw_binds=(str(rw),)
    )
    assert res["ro_read"] == "host data"
    assert res["ro_write"] == "EROFS"
    assert res["remount"] == "EPERM"
    assert res["umount"] == "EPERM"
    assert res["ro_write_after"] == "EROFS"
    assert not (open_dir / "new").exists()
    # Positive control: the writable bind does reach the host.
    assert res["rw_write"] == "ok"
    assert (rw / "new").read_text() == "x"


PROC_SYS = """
line = [l for l in open("/proc/self/mountinfo") if l.split()[4] == "/proc/sys"]
res = {"hostname": err(lambda: open("/proc/sys/kernel/hostname", "w").write("evil")),
       "vm": err(lambda: open("/proc/sys/vm/drop_caches", "w").write("3")),
       "mount_opts": line[-1].split()[5] if line else ""}
print(json.dumps(res))
"""


def test_proc_sys_is_read_only(run: RunScript) -> None:
    res = run(script(PROC_SYS))
    assert res["hostname"] in ("EROFS", "EACCES")
    assert res["vm"] in ("EROFS", "EACCES")
    assert res["mount_opts"].split(",")[0] == "ro"
    assert socket.gethostname() != "evil"


STATUS = """
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
res = {k: status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Uid", "Gid", "Seccomp")}
res["groups"] = os.getgroups()
print(json.dumps(res))
"""


@pytest.mark.parametrize("use_helpers", [True, False], ids=["setpriv", "python-fallback"])
def test_no_capabilities_no_new_privs_unprivileged_uid(use_helpers: bool) -> None:
    plan = sandboxed_plan(
        SandboxPolicy(), [sys.executable, "-c", script(STATUS)], bwrap="/usr/bin/bwrap",
        isolation="full", as_root=IS_ROOT, env={}, ro_binds=(), rw_binds=(),
        socket_paths=(), pass_fds=(), gpu=False, use_helpers=use_helpers,
    )  # fmt: skip
    proc = plan.popen(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    import json

    res = json.loads(out)
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(res[cap], 16) == 0, (cap, res)
    assert res["NoNewPrivs"] == "1"
    assert res["Seccomp"] == "2"
    assert set(res["Uid"].split()) == {"65534"} if IS_ROOT else {str(os.getuid())}
    assert set(res["Gid"].split()) == {"65534"} if IS_ROOT else {str(os.getgid())}
    assert res["groups"] in ([], [65534])


def test_status_control_root_host_has_capabilities(run: RunScript) -> None:
    if not IS_ROOT:
        pytest.skip("the control needs a root host")
    assert int(run(script(STATUS), sandbox=False)["CapEff"], 16) != 0


USERNS = """
fd = os.open("/proc/self/ns/user", os.O_RDONLY)
res = {
    "unshare_user": cerr(libc.unshare(0x10000000)),
    "setns": cerr(libc.setns(fd, 0)),
    "clone3": cerr(libc.syscall(435, None, 0)),
    "ptrace": cerr(libc.ptrace(0, 0, None, None)) if SANDBOXED else "skipped",
    "keyctl": cerr(libc.syscall(KEYCTL, 0, -3, 0)),
    "bpf": cerr(libc.syscall(BPF, 0, None, 0)),
}
import subprocess
res["unshare_cmd"] = subprocess.run(["unshare", "-U", "true"], stderr=subprocess.DEVNULL).returncode if SANDBOXED else 0
print(json.dumps(res))
"""
_NRS = {"x86_64": (250, 321), "aarch64": (219, 280)}


def test_no_nested_user_namespace_ptrace_keyring_bpf(run: RunScript) -> None:
    keyctl, bpf = _NRS[os.uname().machine]
    res = run(script(USERNS, KEYCTL=keyctl, BPF=bpf, SANDBOXED=True))
    assert res["unshare_user"] == "EPERM"
    assert res["setns"] == "EPERM"
    assert res["clone3"] == "ENOSYS"
    assert res["ptrace"] == "EPERM"
    assert res["keyctl"] == "EPERM"
    assert res["bpf"] == "EPERM"
    assert res["unshare_cmd"] != 0
    # Positive control: without the sandbox the same calls get past seccomp.
    control = run(script(USERNS, KEYCTL=keyctl, BPF=bpf, SANDBOXED=False), sandbox=False)
    assert control["keyctl"] == "ok"
    if IS_ROOT:
        assert control["unshare_user"] == "ok"


CONNECT = """
def connect(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        return err(lambda: s.connect(addr))
    finally:
        s.close()
res = {"tcp": connect(socket.AF_INET, ("127.0.0.1", PORT)),
       "abstract": connect(socket.AF_UNIX, ABSTRACT.encode("latin-1")),
       "other_path": connect(socket.AF_UNIX, OTHER),
       "allowed_path": connect(socket.AF_UNIX, ALLOWED)}
print(json.dumps(res))
"""


@pytest.fixture
def listeners(tmp_path: Path) -> Iterator[dict[str, object]]:
    socks = []
    tcp = socket.create_server(("127.0.0.1", 0))
    abstract = socket.socket(socket.AF_UNIX)
    name = f"\0pyisolate-test-{uuid.uuid4().hex}"
    abstract.bind(name)
    paths = {}
    for key in ("allowed", "other"):
        s = socket.socket(socket.AF_UNIX)
        path = str(tmp_path / f"{key}.sock")
        s.bind(path)
        os.chmod(path, 0o666)  # what the runtime does for its own socket
        socks.append(s)
        paths[key] = path
    socks += [tcp, abstract]
    for s in socks:
        s.listen(8)
    try:
        yield {
            "PORT": tcp.getsockname()[1],
            "ABSTRACT": name,
            "OTHER": paths["other"],
            "ALLOWED": paths["allowed"],
        }
    finally:
        for s in socks:
            s.close()


def test_no_network_no_host_sockets_but_the_allowed_one(
    run: RunScript, listeners: dict[str, object]
) -> None:
    code = script(CONNECT, **listeners)
    res = run(code, socket_paths=(str(listeners["ALLOWED"]),))
    assert res["tcp"] in ("ECONNREFUSED", "ENETUNREACH")
    assert res["abstract"] == "ECONNREFUSED"
    assert res["other_path"] == "ENOENT"
    assert res["allowed_path"] == "ok"  # positive control inside the sandbox
    control = run(code, sandbox=False)
    assert set(control.values()) == {"ok"}
    # network=True keeps the host's network namespace.
    assert run(code, policy=SandboxPolicy(network=True))["tcp"] == "ok"


PROCS = """
res = {"kill": err(lambda: os.kill(PID, 0)),
       "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
       "shm": cerr(libc.shmget(KEY, 0, 0))}
print(json.dumps(res))
"""


def test_host_processes_and_sysv_ipc_invisible(run: RunScript) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    key = 0x5A000000 | (os.getpid() & 0xFFFFF)
    shmid = libc.shmget(key, 4096, 0o1000 | 0o666)  # IPC_CREAT
    assert shmid >= 0
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        code = script(PROCS, PID=sleeper.pid, KEY=key)
        res = run(code)
        assert res["kill"] == "ESRCH"
        assert max(res["pids"]) < 10  # only the sandbox's own processes
        assert res["shm"] == "ENOENT"
        control = run(code, sandbox=False)
        assert control["kill"] == "ok"
        assert control["shm"] == "ok"
    finally:
        sleeper.kill()
        sleeper.wait()
        libc.shmctl(shmid, 0, None)  # IPC_RMID


LEAVE = """
res = {p: err(lambda p=p: open(p, "w").write("x")) for p in PATHS}
print(json.dumps(res))
"""


def test_cannot_leave_files_in_host_tmp() -> None:
    paths = [
        f"/tmp/pyisolate-escape-{uuid.uuid4().hex}",
        f"/dev/shm/pyisolate-escape-{uuid.uuid4().hex}",
    ]
    try:
        res = run_script(script(LEAVE, PATHS=paths))
        assert set(res.values()) == {"ok"}  # private /tmp and /dev/shm are writable...
        assert not any(os.path.exists(p) for p in paths)  # ...and vanish with the sandbox
        run_script(script(LEAVE, PATHS=paths), sandbox=False)
        assert all(os.path.exists(p) for p in paths)
    finally:
        for p in paths:
            if os.path.exists(p):
                os.unlink(p)


FORK = """
r, w = os.pipe()
kids = []
for _ in range(N):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    kids.append(pid)
os.close(w)
for pid in kids:
    os.waitpid(pid, 0)
print(json.dumps({"forked": len(kids)}))
"""


def test_fork_is_bounded(run: RunScript) -> None:
    # RLIMIT_NPROC counts every task of the uid machine-wide: use a uid nobody
    # else runs as, so other sandboxes running now do not eat into the limit.
    uid = 1_600_000_000 + os.getpid() % 1_000_000
    policy = SandboxPolicy(uid=uid, gid=uid, limits=ResourceLimits(processes=16))
    assert run(script(FORK, N=100), policy=policy)["forked"] < 16
    if IS_ROOT:  # root is exempt from RLIMIT_NPROC: the control forks them all
        assert run(script(FORK, N=100), sandbox=False)["forked"] == 100


def test_host_secret_does_not_leak(run: RunScript, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYISOLATE_TEST_SECRET", "hunter2")
    monkeypatch.setenv("PYISOLATE_TEST_ALLOWED", "fine")
    code = script("""
        env = dict(os.environ)
        init = err(lambda: open("/proc/1/environ", "rb").read())
        print(json.dumps({"secret": env.get("PYISOLATE_TEST_SECRET"), "allowed": env.get("PYISOLATE_TEST_ALLOWED"), "init": init}))
    """)
    policy = SandboxPolicy(env_allow=("PYISOLATE_TEST_ALLOWED",))
    res = run(code, policy=policy)
    assert res["secret"] is None
    assert res["allowed"] == "fine"
    assert run(code, sandbox=False)["secret"] == "hunter2"


def test_pass_fds_reach_the_actor(run: RunScript) -> None:
    a, b = socket.socketpair()
    try:
        res = run(
            script("print(json.dumps({'sent': os.write(FD, b'hello')}))", FD=b.fileno()),
            pass_fds=(b.fileno(),),
        )
        assert res["sent"] == 5
        assert a.recv(5) == b"hello"
    finally:
        a.close()
        b.close()


PARENT = """
import subprocess, sys, time
from pyisolate.sandbox import SandboxMode, SandboxPolicy, build_launch
plan = build_launch(SandboxPolicy(), SandboxMode.{mode}, [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
                    env={{}}, ro_binds=[], rw_binds=[], socket_paths=[], pass_fds=[])
plan.popen(start_new_session=True)
time.sleep(60)
"""


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for kid in children.get(todo.pop(), []):
            found.add(kid)
            todo.append(kid)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("mode", ["REQUIRED", pytest.param("DISABLED", marks=pytest.mark.slow)])
def test_actor_dies_with_its_parent(mode: str) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT.format(mode=mode)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    kids: set[int] = set()
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline() == b"ready\n"
        kids = _descendants(parent.pid)
        assert kids
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.05)
        survivors = {k for k in kids if _alive(k)}
        if mode == "REQUIRED":
            assert not survivors
        else:  # positive control: an unsandboxed child in its own session survives
            assert survivors
    finally:
        parent.kill()
        parent.wait()
        assert parent.stdout is not None
        parent.stdout.close()
        for k in kids:
            if _alive(k):
                os.kill(k, signal.SIGKILL)


def test_actor_exit_status_survives_bwrap() -> None:
    from pyisolate.sandbox import SandboxMode, build_launch

    for code, expected in (
        ("import sys; sys.exit(3)", 3),
        ("import os; os.kill(os.getpid(), 9)", -9),
    ):
        plan = build_launch(
            SandboxPolicy(), SandboxMode.REQUIRED, [sys.executable, "-c", code],
            env={}, ro_binds=[], rw_binds=[], socket_paths=[], pass_fds=[],
        )  # fmt: skip
        assert plan.actor_returncode(plan.popen().wait()) == expected
