"""Bubblewrap sandboxes for actors: policy, launcher, restriction detection.

The runtime calls :func:`build_launch` for every actor start and runs the
returned :class:`LaunchPlan`; ``doctor`` prints :func:`capabilities`. See the
Sandbox section of the design and ``seed/platform_compatibility.md``.
"""

from __future__ import annotations

from ._detect import (
    Detection,
    RestrictionModel,
    clear_cache,
    detect,
    detect_restriction_model,
)
from ._doctor import capabilities
from ._launch import SandboxWarning, build_launch
from ._plan import Isolation, LaunchPlan
from ._policy import DEFAULT_ENV_ALLOW, ResourceLimits, SandboxMode, SandboxPolicy

__all__ = [
    "DEFAULT_ENV_ALLOW",
    "Detection",
    "Isolation",
    "LaunchPlan",
    "ResourceLimits",
    "RestrictionModel",
    "SandboxMode",
    "SandboxPolicy",
    "SandboxWarning",
    "build_launch",
    "capabilities",
    "clear_cache",
    "detect",
    "detect_restriction_model",
]
