"""Actors for the runtime-level sandbox tests: each method attempts one kind of
escape and reports what happened (``"ok"`` or the errno's name) instead of
raising, so that one test can compare a sandboxed actor with an unsandboxed
control running the very same code.

A plain module (not a test module, not conftest): actor processes import it by
name through the host's sys.path. It imports only the standard library and
pyisolate; torch arrives with the first tensor.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

import pyisolate

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

_libc = ctypes.CDLL(None, use_errno=True)
_libc.shmget.restype = ctypes.c_int
_libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_BIND = 4096
MS_REMOUNT = 32
MS_RDONLY = 1
_READ_LIMIT = 1 << 20


def outcome(call: Callable[[], object]) -> str:
    """``"ok"`` if ``call()`` succeeds, else the errno's symbolic name."""
    try:
        call()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return "ok"


def c_outcome(ret: int) -> str:
    """The same for a libc call's return value (errno from ctypes)."""
    return "ok" if ret >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def _write(path: str, text: str = "x") -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _connect(family: int, address: Any, token: bytes = b"") -> None:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(address)
        if token:
            sock.sendall(token)


def _status() -> dict[str, str]:
    fields = {}
    for line in _read("/proc/self/status").splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _mount_options(path: str) -> str:
    """The per-mount options of the mount that holds ``path`` ("" if none)."""
    best, opts = "", ""
    for line in _read("/proc/self/mountinfo").splitlines():
        parts = line.split()
        point = parts[4]
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, opts = point, parts[5]
    return opts


class Prober(pyisolate.Actor):
    """Attempts escapes on request; also a plain actor for positive controls."""

    def __init__(self) -> None:
        self.held: Any = None
        self.children: list[int] = []

    # -- positive controls ---------------------------------------------------

    async def echo(self, value: Any) -> Any:
        return value

    async def count(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    def double(self, tensor: Any) -> Any:
        return tensor * 2

    def whoami(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid()}

    # -- filesystem --------------------------------------------------------------

    def read_files(self, paths: list[str]) -> dict[str, str]:
        return {p: outcome(lambda p=p: _read(p)) for p in paths}

    def read_text(self, path: str) -> str:
        return _read(path)

    def list_dir(self, path: str) -> list[str] | str:
        try:
            return sorted(os.listdir(path))
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, "?")

    def write_files(self, paths: list[str]) -> dict[str, str]:
        return {p: outcome(lambda p=p: _write(p, "escaped")) for p in paths}

    def remount(self, path: str) -> dict[str, str]:
        """Try to make a read-only bind writable again, or to unmount it."""
        target = path.encode()
        return {
            "options": _mount_options(path),
            "remount_rw": c_outcome(_libc.mount(None, target, None, MS_REMOUNT | MS_BIND, None)),
            "umount": c_outcome(_libc.umount2(target, 2)),  # MNT_DETACH
            "bind_over": c_outcome(_libc.mount(b"/tmp", target, None, MS_BIND, None)),
            "options_after": _mount_options(path),
        }

    # -- privileges --------------------------------------------------------------

    def privileges(self) -> dict[str, Any]:
        status = _status()
        caps = {k: int(status[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
        return {
            "caps": caps,
            "no_new_privs": status.get("NoNewPrivs"),
            "seccomp": status.get("Seccomp"),
            "uid": status["Uid"].split(),
            "gid": status["Gid"].split(),
            "groups": status.get("Groups", ""),
        }

    def proc_sys_write(self) -> dict[str, str]:
        return {
            "kernel.hostname": outcome(lambda: _write("/proc/sys/kernel/hostname", "evil")),
            "vm.drop_caches": outcome(lambda: _write("/proc/sys/vm/drop_caches", "1")),
            "sysrq": outcome(lambda: _write("/proc/sysrq-trigger", "h")),
        }

    def new_namespaces(self) -> dict[str, str]:
        # In a forked child: a success must not change this actor's namespaces.
        results = {}
        for name, flags in (("user", CLONE_NEWUSER), ("mount", CLONE_NEWNS)):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                ok = _libc.unshare(flags) == 0
                os._exit(0 if ok else 100 + ctypes.get_errno())
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            results[name] = "ok" if code == 0 else errno.errorcode.get(code - 100, str(code))
        return results

    # -- network -----------------------------------------------------------------

    def connect_tcp(self, host: str, port: int, token: bytes) -> str:
        return outcome(lambda: _connect(socket.AF_INET, (host, port), token))

    def connect_unix(self, address: str | bytes, token: bytes) -> str:
        return outcome(lambda: _connect(socket.AF_UNIX, address, token))

    # -- processes and IPC ------------------------------------------------------

    def processes(self, host_pid: int) -> dict[str, Any]:
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        cmdlines = {}
        for pid in pids:
            try:
                cmdlines[pid] = _read(f"/proc/{pid}/cmdline").replace("\0", " ")[:80]
            except OSError:
                pass
        return {
            "pids": pids,
            "cmdlines": cmdlines,
            "signal0": outcome(lambda: os.kill(host_pid, 0)),
            "sigcont": outcome(lambda: os.kill(host_pid, signal.SIGCONT)),
            "proc_entry": outcome(lambda: _read(f"/proc/{host_pid}/status")),
            "pidfd": outcome(lambda: os.close(os.pidfd_open(host_pid))),
        }

    def sysv_shm(self, key: int) -> dict[str, Any]:
        shmid = _libc.shmget(key, 0, 0)
        listed = ""
        try:
            listed = _read("/proc/sysvipc/shm")
        except OSError:
            pass
        return {"shmget": c_outcome(shmid), "listed": str(key) in listed.split()}

    # -- environment -------------------------------------------------------------

    def environment(self, name: str) -> dict[str, Any]:
        leaked_in = []
        for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
            try:
                with open(f"/proc/{pid}/environ", "rb") as fh:
                    if name.encode() in fh.read():
                        leaked_in.append(int(pid))
            except OSError:
                pass
        return {"value": os.environ.get(name), "in_proc_environ": leaked_in}

    # -- resources ---------------------------------------------------------------

    def fork_until_refused(self, cap: int) -> dict[str, Any]:
        """Fork sleeping children until the kernel refuses (or ``cap`` is hit),
        then kill them all."""
        limit_line = next(
            (
                ln
                for ln in _read("/proc/self/limits").splitlines()
                if ln.startswith("Max processes")
            ),
            "",
        )
        forked, error = 0, "none"
        children: list[int] = []
        try:
            while forked < cap:
                try:
                    pid = os.fork()
                except OSError as exc:
                    error = errno.errorcode.get(exc.errno or 0, "?")
                    break
                if pid == 0:  # pragma: no cover - child
                    time.sleep(60)
                    os._exit(0)
                children.append(pid)
                forked += 1
        finally:
            for pid in children:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            for pid in children:
                try:
                    os.waitpid(pid, 0)
                except OSError:
                    pass
        return {"forked": forked, "error": error, "limits": limit_line.split()[2:4]}

    # -- tensor memory -----------------------------------------------------------

    def hold(self, tensor: Any) -> int:
        """Keep a received tensor alive; return its first element."""
        self.held = tensor
        return int(tensor.flatten()[0])

    def drop(self) -> None:
        self.held = None

    def find_bytes(
        self, magic: bytes, extra_pids: list[int], scan_all: bool = True
    ) -> dict[str, Any]:
        """Search every memory segment this process can reach for ``magic``:
        /dev/shm, every visible process's shared-memory mappings (through
        /proc/<pid>/mem and map_files) and open fds (``scan_all=False``: only
        ``extra_pids``). Reports where it was found and which attempts on
        ``extra_pids`` (the holder's host pid) failed how."""
        found: list[str] = []
        attempts: dict[str, str] = {}
        shm_entries = []
        for entry in _listdir("/dev/shm"):
            shm_entries.append(entry)
            if _file_has(f"/dev/shm/{entry}", magic):
                found.append(f"/dev/shm/{entry}")
        visible = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        for pid in [*(visible if scan_all else []), *extra_pids]:
            note = pid in extra_pids
            try:
                maps = _read(f"/proc/{pid}/maps")
            except OSError as exc:
                if note:
                    attempts[f"/proc/{pid}/maps"] = errno.errorcode.get(exc.errno or 0, "?")
                continue
            for line in maps.splitlines():
                parts = line.split(maxsplit=5)
                path = parts[5] if len(parts) == 6 else ""
                if "memfd:" not in path and "/dev/shm" not in path:
                    continue
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                size = min(hi - lo, _READ_LIMIT)
                where = f"/proc/{pid}/mem@{parts[0]}"
                try:
                    with open(f"/proc/{pid}/mem", "rb") as fh:
                        fh.seek(lo)
                        if magic in fh.read(size):
                            found.append(where)
                except (OSError, ValueError, OverflowError) as exc:
                    if note:
                        attempts[where] = type(exc).__name__
                mf = f"/proc/{pid}/map_files/{parts[0]}"
                try:
                    if _file_has(mf, magic):
                        found.append(mf)
                except OSError as exc:
                    if note:
                        attempts[mf] = errno.errorcode.get(exc.errno or 0, "?")
            for fd in _listdir(f"/proc/{pid}/fd"):
                link = f"/proc/{pid}/fd/{fd}"
                try:
                    if "memfd:" in os.readlink(link) and _file_has(link, magic):
                        found.append(link)
                except OSError:
                    pass
        for pid in extra_pids:
            for rel in ("map_files", "fd", "mem"):
                path = f"/proc/{pid}/{rel}"
                attempts.setdefault(path, outcome(lambda path=path: _open_close(path)))
        return {
            "found": sorted(set(found)),
            "attempts": attempts,
            "visible_pids": visible,
            "shm_entries": shm_entries,
        }


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _open_close(path: str) -> None:
    os.close(os.open(path, os.O_RDONLY))


def _file_has(path: str, magic: bytes) -> bool:
    with open(path, "rb") as fh:
        return magic in fh.read(_READ_LIMIT)
