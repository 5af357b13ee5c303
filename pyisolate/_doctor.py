"""``python -m pyisolate doctor``: what this machine offers pyisolate.

Each layer contributes rows (``capabilities()`` in transport and sandbox);
a layer that is not importable is reported rather than crashing the report.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys

__all__ = ["doctor_rows", "run_doctor"]


def _core_rows() -> list[tuple[str, str]]:
    import zmq

    from .actors import default_compute_threads

    rows = [
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("platform", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("cpu cores", str(os.cpu_count())),
        (
            "compute threads per actor",
            f"{default_compute_threads()} (SpawnOptions.compute_threads)",
        ),
        ("pyzmq / libzmq", f"{zmq.__version__} / {zmq.zmq_version()}"),
        ("ipc sockets", "yes" if zmq.has("ipc") else "no (tcp fallback needed)"),
        ("pidfd exit watch", "yes" if hasattr(os, "pidfd_open") else "no (thread fallback)"),
    ]
    try:
        import torch

        rows.append(("torch", torch.__version__))
    except ImportError:
        rows.append(("torch", "not installed (tensors need: pip install 'pyisolate[torch]')"))
    return rows


def doctor_rows() -> list[tuple[str, str]]:
    rows = _core_rows()
    for module in ("pyisolate.sandbox", "pyisolate.transport"):
        try:
            capabilities = importlib.import_module(module).capabilities
        except (ImportError, AttributeError) as exc:
            rows.append((module, f"unavailable: {exc}"))
            continue
        rows.extend(capabilities())
    return rows


def run_doctor() -> int:
    rows = doctor_rows()
    width = max(len(k) for k, _ in rows)
    print("pyisolate doctor")
    print("----------------")
    for key, value in rows:
        lines = str(value).splitlines() or [""]
        print(f"{key:<{width}}  {lines[0]}")
        for more in lines[1:]:
            print(f"{'':<{width}}  {more}")
    return 0


if __name__ == "__main__":
    sys.exit(run_doctor())
