"""The compatibility import path for sandbox detection.

``from pyisolate._internal.sandbox_detect import detect_restriction_model,
RestrictionModel`` is the path that older platform documentation prints, and
it keeps working (docs/troubleshooting.md, "The compatibility import path").
New code imports the same names from :mod:`pyisolate.sandbox`, where they
live.
"""

from __future__ import annotations

from ..sandbox import Detection, RestrictionModel, SandboxMode, detect, detect_restriction_model

__all__ = ["Detection", "RestrictionModel", "SandboxMode", "detect", "detect_restriction_model"]
