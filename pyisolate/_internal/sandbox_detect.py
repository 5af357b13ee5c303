"""The seed's documented import path for sandbox detection.

``from pyisolate._internal.sandbox_detect import detect_restriction_model,
RestrictionModel`` works as ``seed/platform_compatibility.md`` prints it; the
implementation lives in :mod:`pyisolate.sandbox`.
"""

from __future__ import annotations

from ..sandbox import Detection, RestrictionModel, SandboxMode, detect, detect_restriction_model

__all__ = ["Detection", "RestrictionModel", "SandboxMode", "detect", "detect_restriction_model"]
