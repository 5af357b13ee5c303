"""The warm template process: actors are forked from it instead of started cold.

A cold actor pays for an interpreter start, pyisolate's imports and the
actor's own imports (torch: a second or more). The template pays them once;
each actor then costs a ``fork()`` and its constructor. The host starts the
template with the same sandbox plan an actor would get, so a forked actor
lives inside the same policy.

Fork safety, and why this process is shaped as it is:

* single-threaded (a selector loop, no helper threads), so no lock can be held
  by a thread that the child will not have;
* no ZeroMQ context, no event loop and no CUDA context are ever created here
  (each forked actor makes its own); the template refuses to fork, and says
  so, if some preloaded module initialised CUDA;
* the template is the actors' parent: it reaps them (SIGCHLD) and reports each
  exit status to the host, because ``waitpid`` works only for one's own
  children. Before reaping one it kills the process group the actor leads
  (it called setsid), so that what the actor started dies with it. The
  actors die with the template (parent-death signal, set by the actor's
  normal start-up; inside a sandbox, its pid namespace ends with the
  template), and it dies with the host (its stdin lifeline).

Protocol on the control socket (SOCK_SEQPACKET, msgpack maps): the host sends
``fork`` (with stdin, stdout, stderr and side-channel fds attached), ``kill``
and ``preload``; the template answers ``forked`` / ``error`` and reports
``exit``.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import importlib
import os
import selectors
import signal
import socket
import struct
import sys
import traceback
from typing import Any

import msgpack

from ..transport.lowlevel import PRELOAD_MODULES
from ._bootstrap import read_bootstrap

__all__ = ["place_fds", "recv_message", "recv_message_from", "send_message", "template_main"]

MAX_MESSAGE = 65536
MAX_FDS = 4
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
BASE_MODULES = (
    "pyisolate.actors._child",
    "anyio._backends._asyncio",
    # What a forked actor would otherwise import on its own, each time:
    "uvloop",  # the actor's event loop, where installed
    *PRELOAD_MODULES,  # its first tensor (imports neither torch nor numpy)
)


def recv_message_from(
    sock: socket.socket,
) -> tuple[dict[str, Any] | None, list[int], int | None]:
    """One control message, the fds attached to it, and its sender's pid as
    the kernel translated it for us (only where the socket has SO_PASSCRED:
    the host's end); (None, [], None) at EOF."""
    fds = array.array("i")
    data, ancdata, _flags, _addr = sock.recvmsg(
        MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * fds.itemsize) + socket.CMSG_SPACE(_UCRED.size)
    )
    pid = None
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
        elif level == socket.SOL_SOCKET and kind == getattr(socket, "SCM_CREDENTIALS", None):
            pid = _UCRED.unpack(payload[: _UCRED.size])[0] or None
    if not data:
        for fd in fds:
            os.close(fd)
        return None, [], None
    return msgpack.unpackb(data), list(fds), pid


def recv_message(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One control message and the fds attached to it; (None, []) at EOF."""
    message, fds, _pid = recv_message_from(sock)
    return message, fds


def send_message(sock: socket.socket, message: dict[str, Any], fds: list[int] = ()) -> None:  # type: ignore[assignment]
    sock.sendmsg(
        [msgpack.packb(message)],
        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else [],
    )


def _preload(modules: list[str]) -> list[str]:
    """Import ``modules``; return error texts for those that failed."""
    errors = []
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # a broken module fails its actors, not us
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    return errors


def _cuda_initialized() -> bool:
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:
        return False


def template_main() -> None:
    config = read_bootstrap(0)
    sys.path[:] = list(config["sys_path"])
    with contextlib.suppress(OSError):
        os.chdir(config.get("cwd") or "/")
    ctl = socket.socket(fileno=int(config["control_fd"]))
    errors = _preload(list(BASE_MODULES) + list(config.get("preload", ())))
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(ctl, selectors.EVENT_READ, "ctl")
    sel.register(0, selectors.EVENT_READ, "lifeline")
    sel.register(wake_r, selectors.EVENT_READ, "sigchld")
    children: set[int] = set()
    send_message(ctl, {"op": "ready", "errors": errors, "pid": os.getpid()})

    def close_own_fds() -> None:
        """In a forked child: close what belongs to the template."""
        sel.close()
        os.close(ctl.detach())
        os.close(wake_r)
        os.close(wake_w)

    while True:
        for key, _ in sel.select():
            if key.data == "lifeline":
                if not os.read(0, 4096):  # the host is gone: so are we
                    for pid in children:
                        _kill_actor(pid)
                    os._exit(0)
            elif key.data == "sigchld":
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                _reap(ctl, children)
            else:
                message, fds = recv_message(ctl)
                if message is None:
                    os._exit(0)
                _serve(ctl, message, fds, children, close_own_fds)


def _kill_actor(pid: int) -> None:
    """SIGKILL one of our actors (unreaped: ``pid`` is still its number) and
    the process group it leads (it called setsid): what it started dies too."""
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def _reap(ctl: socket.socket, children: set[int]) -> None:
    while True:
        try:
            # Look first, reap after: while the actor is an unreaped zombie,
            # the number of its process group cannot have been reused.
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid == 0:
            return
        pid = info.si_pid
        if pid in children:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        _pid, status = os.waitpid(pid, 0)
        if pid in children:
            children.discard(pid)
            send_message(ctl, {"op": "exit", "pid": pid, "code": os.waitstatus_to_exitcode(status)})


def _serve(
    ctl: socket.socket,
    message: dict[str, Any],
    fds: list[int],
    children: set[int],
    close_own_fds: Any,
) -> None:
    op = message.get("op")
    if op == "kill":
        if message["pid"] in children:
            _kill_actor(message["pid"])
        return
    if op == "preload":
        _preload(list(message.get("modules", ())))
        return
    if op != "fork" or len(fds) != 4:
        for fd in fds:
            os.close(fd)
        send_message(ctl, {"op": "error", "seq": message.get("seq"), "error": "bad request"})
        return
    errors = _preload(list(message.get("preload", ())))
    if _cuda_initialized():
        for fd in fds:
            os.close(fd)
        send_message(
            ctl,
            {
                "op": "error",
                "seq": message["seq"],
                "error": "a CUDA context exists in the template: forking is unsafe",
            },
        )
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _become_actor(fds, int(message["channel_to"]), close_own_fds)
    for fd in fds:
        os.close(fd)
    children.add(pid)
    send_message(ctl, {"op": "forked", "seq": message["seq"], "pid": pid, "errors": errors})


def place_fds(fds: list[int], targets: tuple[int, ...]) -> None:
    """Move ``fds[i]`` onto fd number ``targets[i]`` and close the originals.

    Any of them may sit on any target, so each is first copied above every
    target (a copy can then never be a target itself: ``dup2`` of an fd onto
    itself does nothing, and closing the copy would close the target).
    """
    floor = max(*targets, 63) + 1
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, floor) for fd in fds]
    for fd in fds:
        os.close(fd)
    for fd, target in zip(high, targets, strict=True):
        os.dup2(fd, target)
        os.close(fd)


def _become_actor(fds: list[int], channel_to: int, close_own_fds: Any) -> None:
    """In the forked child: take the fds the host sent, run the actor's main."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        close_own_fds()
        place_fds(fds, (0, 1, 2, channel_to))
        os.setsid()  # as a cold actor: a terminal's Ctrl-C is not ours
        from ._child import main

        main()  # reads the bootstrap from fd 0 and ends with os._exit
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


if __name__ == "__main__":
    template_main()
