"""Describing where numbers were measured: library versions, CPU, devices.

Only libraries that are already imported are asked for their version (nothing
is imported here just to report it), so this is cheap and has no side effects.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterable
from typing import Any

from .. import __version__
from ..backends import Backend

__all__ = ["environment"]

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")
_MODULES = ("numpy", "array_api_compat", "array_api_strict", "torch", "jax", "jaxlib", "cupy", "sklearn")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(backends: Iterable[Backend] = ()) -> dict[str, Any]:
    """Python, OS, CPU, versions of the imported array libraries, and each backend's device.

    Returns:
        A JSON-serialisable dict.
    """
    versions = {"portable_nn": __version__}
    for name in _MODULES:
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = str(getattr(module, "__version__", "unknown"))
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch.version, "cuda", None):
        versions["torch_cuda"] = str(torch.version.cuda)
    threads: dict[str, Any] = {k: os.environ[k] for k in _THREAD_VARS if k in os.environ}
    if torch is not None:
        threads["torch.get_num_threads()"] = torch.get_num_threads()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "versions": versions,
        "devices": {f"{be.name}:{be.device_label}": be.describe_device() for be in backends},
    }
