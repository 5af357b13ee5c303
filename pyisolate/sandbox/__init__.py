"""Bubblewrap sandboxes for actors: policy, launcher, restriction detection.

A :class:`Sandbox` (:class:`Bubblewrap`, or :class:`NullSandbox` for no
sandbox) turns a :class:`LaunchRequest` into a :class:`LaunchPlan` that the
runtime's launchers run; :func:`build_launch` is the function underneath.
``doctor`` prints :func:`capabilities`; :func:`detect_restriction_model` says
what this machine allows.
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
from ._sandbox import Bubblewrap, LaunchRequest, NullSandbox, Sandbox, sandbox_for

__all__ = [
    "DEFAULT_ENV_ALLOW",
    "Bubblewrap",
    "Detection",
    "Isolation",
    "LaunchPlan",
    "LaunchRequest",
    "NullSandbox",
    "ResourceLimits",
    "RestrictionModel",
    "Sandbox",
    "SandboxMode",
    "SandboxPolicy",
    "SandboxWarning",
    "build_launch",
    "capabilities",
    "clear_cache",
    "detect",
    "detect_restriction_model",
    "sandbox_for",
]
