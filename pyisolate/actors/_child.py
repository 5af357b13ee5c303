"""The actor process: connect to the host, build the actor, serve its calls.

Started by the host as ``python -c "from pyisolate.actors._child import main; main()"``
(possibly inside bubblewrap). Start-up order matters for speed and safety:

1. read the bootstrap from stdin; arrange to die with the host (parent-death
   signal on Linux, and a lifeline thread that exits when stdin closes, which
   also covers a SIGKILLed host on every platform);
2. connect and say HELLO (version + token) while importing the actor's module;
3. receive the constructor arguments, build the actor, run ``on_start``; answer
   READY with the method table, or START_FAILED with the traceback;
4. serve until SHUTDOWN, then run ``on_stop`` and exit.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import traceback
from typing import Any

import anyio

from ..environment import NO_UVLOOP
from ._bootstrap import read_bootstrap
from ._peercred import send_credentials
from ._server import ActorServer, current_server

__all__ = ["current_server", "main"]


def main() -> None:
    boot = read_bootstrap(0)
    _die_with_host()
    channel = _open_channel(boot.get("channel_fd"))
    _install_log_forwarding(boot.get("log_level", logging.WARNING))
    if boot.get("sys_path_mode") == "prepend":
        sys.path[:0] = [p for p in boot["sys_path"] if p not in sys.path]
    else:
        sys.path[:] = list(boot["sys_path"])
    if boot.get("cwd"):
        try:
            os.chdir(boot["cwd"])
        except OSError:
            pass
    server = ActorServer(boot, channel)
    code = 0
    try:
        backend = boot.get("backend", "asyncio")
        anyio.run(server.serve, backend=backend, backend_options=_backend_options(backend))
    except BaseException as exc:
        # sys.exit(n) anywhere (a constructor, a method) keeps its meaning:
        # the host reports exit code n, as for any program. Task groups wrap
        # it in an exception group.
        found = _system_exit_in(exc)
        if found is not None:
            code = _exit_code(found)
        else:
            traceback.print_exc()
            code = 1
    finally:
        server.close()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _system_exit_in(exc: BaseException) -> SystemExit | None:
    if isinstance(exc, SystemExit):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _system_exit_in(inner)
        if found is not None:
            return found
    return None


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _backend_options(backend: str) -> dict[str, Any]:
    """uvloop where it is installed: its loop turns cost a fraction of
    asyncio's, and a small call spends most of its time in them."""
    if backend != "asyncio" or os.environ.get(NO_UVLOOP):
        return {}
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def _open_channel(fd: int | None) -> socket.socket | None:
    """The side channel to the host: first our credentials (so the host learns
    our real pid through any pid namespace), later tensor file descriptors."""
    if fd is None:
        return None
    channel = socket.socket(fileno=fd)
    try:
        send_credentials(channel)
    except OSError:
        pass
    return channel


def _die_with_host() -> None:
    if sys.platform == "linux":
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except Exception:
            pass

    def lifeline() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        os._exit(70)

    threading.Thread(target=lifeline, name="pyisolate-lifeline", daemon=True).start()


class _ForwardingHandler(logging.Handler):
    """Writes records to stderr in a form the host turns back into records.

    Each fits in the host's line-length cap (a long message keeps its head and
    its tail), so the host never cuts one into a plain line.
    """

    def emit(self, record: logging.LogRecord) -> None:
        from ._output import encode_record  # here: _output imports this module

        try:
            line = encode_record(record.levelno, record.name, self.format(record))
            sys.stderr.write(f"{line}\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def _install_log_forwarding(level: int) -> None:
    root = logging.getLogger()
    root.addHandler(_ForwardingHandler())
    root.setLevel(level)


# A child started with ``python -m pyisolate.actors._child`` also works.
if __name__ == "__main__":
    main()
