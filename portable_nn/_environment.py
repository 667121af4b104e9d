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

from ._backend import Backend

__all__ = ["describe_device", "device_label", "environment"]

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")
_MODULES = ("numpy", "array_api_compat", "array_api_strict", "torch", "jax", "jaxlib", "cupy", "sklearn")


def device_label(be: Backend) -> str:
    """Short device name: ``"cpu"``, ``"cuda:0"``, ``"gpu:0"``, ``"device1"``..."""
    if be.name == "numpy":
        return "cpu"
    if be.name == "torch":
        return str(be.device)
    if be.name == "jax":
        return f"{be.device.platform}:{be.device.id}"
    if be.name == "cupy":
        return f"cuda:{be.device.id}"
    return str(getattr(be.device, "_device", be.device))  # array_api_strict.Device


def describe_device(be: Backend) -> str:
    """Device name with the hardware model for GPUs, e.g. ``"cuda:0 (NVIDIA H200)"``."""
    label = device_label(be)
    try:
        if be.name == "torch" and be.device.type == "cuda":
            import torch

            return f"{label} ({torch.cuda.get_device_name(be.device)})"
        if be.name == "jax" and be.is_gpu:
            return f"{label} ({be.device.device_kind})"
        if be.name == "cupy":
            import cupy

            name = cupy.cuda.runtime.getDeviceProperties(be.device.id)["name"]
            return f"{label} ({name.decode() if isinstance(name, bytes) else name})"
    except Exception:  # a name is nice to have; never fail a report over it
        return label
    return label


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
    from . import __version__

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
        "devices": {f"{be.name}:{device_label(be)}": describe_device(be) for be in backends},
    }
