"""Can an actor see the GPU here, sandboxed and not? Prints one JSON line.

Run by scripts/gpu_check.py before the GPU tests, to decide whether their
actors can run in the runtime's AUTO sandbox or must run unsandboxed (and to
say so in the report): a sandbox needs bubblewrap, the GPU device nodes and
the driver's libraries visible inside it.

    python scripts/gpu_preflight.py
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any

import anyio

import pyisolate
from pyisolate import SandboxMode, SandboxPolicy


class Probe(pyisolate.Actor):
    def cuda(self) -> dict[str, Any]:
        try:
            import torch

            ok = bool(torch.cuda.is_available())
            return {
                "cuda": ok,
                "name": torch.cuda.get_device_name(0) if ok else "",
                "devices": sorted(d for d in os.listdir("/dev") if d.startswith("nvidia")),
            }
        except Exception as exc:
            return {"cuda": False, "error": f"{type(exc).__name__}: {exc}"}


async def _probe(mode: SandboxMode) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            async with pyisolate.Runtime(sandbox=(mode, SandboxPolicy(gpu=True))) as rt:
                ref = await rt.spawn(Probe, options=pyisolate.SpawnOptions(start_timeout=60))
                result = dict(await ref.cuda())
                result["isolation"] = rt.isolation(ref)
        except Exception as exc:
            result = {"cuda": False, "error": f"{type(exc).__name__}: {exc}"}
    result["warnings"] = [str(w.message).splitlines()[0] for w in caught]
    return result


async def main() -> None:
    report = {
        "sandboxed": await _probe(SandboxMode.AUTO),
        "unsandboxed": await _probe(SandboxMode.DISABLED),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    anyio.run(main)
    sys.stdout.flush()
