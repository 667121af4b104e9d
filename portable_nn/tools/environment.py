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

__all__ = [
    "blas_threads",
    "environment",
    "installed_versions",
    "threadpools",
]

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")
_MODULES = ("numpy", "array_api_compat", "array_api_strict", "torch", "jax", "jaxlib", "cupy", "sklearn")


def threadpools() -> list[dict[str, Any]] | None:
    """The native thread pools loaded in this process (BLAS, OpenMP), per threadpoolctl.

    Returns:
        One dict per pool (``user_api``, ``internal_api``, ``num_threads``,
        ``version``, ``filepath``), or None when threadpoolctl is not installed.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    keys = (
        "user_api",
        "internal_api",
        "num_threads",
        "version",
        "threading_layer",
        "architecture",
        "filepath",
    )
    return [{k: info[k] for k in keys if k in info} for info in threadpool_info()]


def blas_threads() -> tuple[int, str]:
    """Threads NumPy's BLAS uses, and where that number came from.

    Asks threadpoolctl when installed (preferring the BLAS that NumPy loaded),
    else reads ``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS``/``OMP_NUM_THREADS``,
    else falls back to ``os.cpu_count()``.

    Returns:
        ``(threads, source)``, source e.g. ``"threadpoolctl (openblas)"``.
    """
    import numpy  # noqa: F401  (load NumPy's BLAS so threadpoolctl can see it)

    pools = threadpools()
    if pools:
        blas = [p for p in pools if p.get("user_api") == "blas"]
        mine = [p for p in blas if "numpy" in str(p.get("filepath", ""))] or blas
        if mine:
            return int(mine[0]["num_threads"]), f"threadpoolctl ({mine[0].get('internal_api', 'blas')})"
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) >= 1:
            return int(value), var
    return os.cpu_count() or 1, "os.cpu_count()"


def installed_versions(distributions: Iterable[str]) -> dict[str, str]:
    """Versions of installed distributions (e.g. ``"torch"``, ``"scikit-learn"``), read without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in distributions:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


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
