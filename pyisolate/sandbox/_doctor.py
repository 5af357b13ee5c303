"""Rows for ``python -m pyisolate doctor``: what the sandbox can do here and,
where something is missing, the commands that fix it."""

from __future__ import annotations

import subprocess

from ._bwrap import gpu_devices
from ._detect import Detection, detect

__all__ = ["capabilities"]

_AUTO_TEXT = {
    "full": "full isolation (bubblewrap, all namespaces, seccomp)",
    "degraded": "degraded sandbox (filesystem isolation, no user namespace)",
    "none": "no sandbox (actors run unsandboxed, with a warning)",
}


def _bwrap_version(bwrap: str) -> str:
    try:
        out = subprocess.run(
            [bwrap, "--version"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return bwrap
    return f"{bwrap} ({out.stdout.strip() or 'unknown version'})"


def capabilities(detection: Detection | None = None) -> list[tuple[str, str]]:
    """(label, value) rows describing sandbox support; remediation when not full."""
    det = detection or detect()
    rows = [
        ("sandbox restriction model", f"{det.model} - {det.model.summary}"),
        ("sandbox mode AUTO picks", _AUTO_TEXT[det.level]),
    ]
    if det.bwrap:
        rows.append(("bubblewrap", _bwrap_version(det.bwrap)))
    if det.level != "none":
        who = (
            "an unprivileged uid of their own each (host is root)"
            if det.as_root
            else "the host uid in a user namespace"
        )
        rows.append(("sandboxed actors run as", who))
    devices = gpu_devices()
    rows.append(("GPU devices for passthrough", ", ".join(devices) if devices else "none"))
    if det.detail:
        rows.append(("sandbox probe error", det.detail))
    if det.model.remediation:
        rows.append(("sandbox remediation", det.model.remediation))
    return rows
