"""Backends: which array namespace and device new arrays are made on.

A :class:`Backend` names an array library (``numpy``, ``cupy``, ``torch``,
``jax``, ``array_api_strict``), its Array API namespace ``xp`` and a device.
Numeric code never reads the default backend: it takes the namespace from its
input arrays with :func:`namespace`. Only code that has no array yet (weight
init, converting user data) asks :func:`get_backend`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat
import array_api_compat.numpy
import numpy as np

__all__ = [
    "Backend",
    "namespace",
    "to_numpy",
    "BACKEND_NAMES",
]

BACKEND_NAMES = ("numpy", "cupy", "torch", "jax", "array_api_strict")
_DTYPE_NAMES = ("float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "bool")

# NumPy >= 2 implements the standard itself; calling it directly avoids the
# ~1-2 us a call that array_api_compat's wrapper costs on tiny arrays.
_NUMPY_IS_ARRAY_API = hasattr(np, "astype") and hasattr(np, "__array_namespace_info__")
_NUMPY_NS: Any = np if _NUMPY_IS_ARRAY_API else array_api_compat.numpy  # type: ignore[attr-defined]


def namespace(*arrays: Any, xp: Any = None) -> Any:
    """Return the Array API namespace of ``arrays`` (or ``xp`` when given).

    Raises a :class:`TypeError` naming the array types when the inputs come
    from two different array libraries: nothing is ever converted silently.
    """
    if xp is not None:
        return xp
    if all(type(a) is np.ndarray for a in arrays):
        return _NUMPY_NS
    try:
        ns = array_api_compat.array_namespace(*arrays)
    except TypeError as e:
        kinds = sorted({f"{type(a).__module__}.{type(a).__name__}" for a in arrays})
        raise TypeError(
            f"arrays from different array libraries were mixed: {', '.join(kinds)}. "
            "Move them to one backend first, e.g. pnn.to_backend(params, be) or be.asarray(X)."
        ) from e
    if _NUMPY_IS_ARRAY_API and ns is array_api_compat.numpy:  # type: ignore[attr-defined]
        return np
    return ns


@dataclass(frozen=True)
class Backend:
    """An array library and a device on it.

    Attributes:
        name: one of ``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"``,
            ``"array_api_strict"``.
        xp: the library's Array API namespace.
        device: the device new arrays are placed on (the namespace's own
            device object, e.g. ``torch.device("cuda:0")``).
    """

    name: str
    xp: Any
    device: Any

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, device={self.device!r})"

    @property
    def is_gpu(self) -> bool:
        """True when arrays live on a GPU (CuPy, torch CUDA, JAX GPU)."""
        if self.name == "cupy":
            return True
        if self.name == "torch":
            return bool(self.device.type == "cuda")
        if self.name == "jax":
            return bool(self.device.platform in ("gpu", "cuda", "rocm"))
        return False

    def dtype(self, dtype: Any) -> Any:
        """Resolve ``"float32"``/``"float64"`` (or a dtype object) on this backend.

        Raises:
            TypeError: the name is not a dtype of this namespace, or this
                device does not support it (e.g. float64 on a device without it).
        """
        if not (isinstance(dtype, (str, np.dtype)) or isinstance(dtype, type)):
            return dtype  # a dtype object of this namespace (torch.float32, xp.float64...)
        name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
        if name not in _DTYPE_NAMES:
            raise TypeError(f"{self}: unknown dtype {dtype!r}; use one of {', '.join(_DTYPE_NAMES)}.")
        supported = _supported_dtype_names(self)
        if supported is not None and name not in supported:
            raise TypeError(
                f"{self} does not support dtype {name} (supported here: {', '.join(sorted(supported))}). "
                "Use dtype='float32' on this device."
            )
        resolved = getattr(self.xp, name)
        # NumPy, JAX and CuPy expose scalar types; their arrays carry numpy.dtype objects.
        return np.dtype(resolved) if isinstance(resolved, type) else resolved

    def asarray(self, data: Any, dtype: Any = None) -> Any:
        """Copy host data (nested lists, NumPy arrays) onto this backend's device.

        Args:
            data: array-like of any shape.
            dtype: target dtype name or object; ``None`` keeps the data's own.

        Returns:
            An array of ``self.xp`` on ``self.device``, same shape as ``data``.
        """
        dt = None if dtype is None else self.dtype(dtype)
        if self.name == "numpy":
            return np.asarray(data, dtype=dt)
        # NumPy >= 2 arrays have __array_namespace__ too: they are host data, so their dtype is checked.
        if dt is None and (isinstance(data, np.ndarray) or not hasattr(data, "__array_namespace__")):
            host = np.asarray(data)
            if host.dtype.kind in "fc":
                dt = self.dtype(host.dtype.name)
            data = host
        return self.xp.asarray(data, dtype=dt, device=self.device)

    def to_numpy(self, a: Any) -> np.ndarray:
        """Copy an array of this backend (any device) to a host ``numpy.ndarray``."""
        return to_numpy(a)

    def synchronize(self, *arrays: Any) -> None:
        """Block until queued device work has finished (for timing).

        CuPy and torch CUDA wait for the whole device. JAX has no device-wide
        wait: pass the arrays a computation produced (any pytree) and this
        blocks until they are ready; without arrays it is a no-op on JAX.
        """
        if self.name == "cupy":
            import cupy

            cupy.cuda.get_current_stream().synchronize()
        elif self.name == "torch" and self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
        elif self.name == "jax" and arrays:
            import jax

            jax.block_until_ready(arrays)


def to_numpy(a: Any) -> np.ndarray:
    """Copy an array of any supported library and device to a ``numpy.ndarray``."""
    if isinstance(a, np.ndarray):
        return a
    if array_api_compat.is_cupy_array(a):
        return a.get()  # type: ignore[no-any-return]
    if array_api_compat.is_torch_array(a):
        return a.detach().cpu().numpy()  # type: ignore[no-any-return]
    if array_api_compat.is_array_api_strict_namespace(array_api_compat.array_namespace(a)):
        import array_api_strict

        return np.asarray(array_api_compat.to_device(a, array_api_strict.Device("CPU_DEVICE")))
    return np.asarray(a)


def _supported_dtype_names(be: Backend) -> set[str] | None:
    info = getattr(be.xp, "__array_namespace_info__", None)
    if info is None:
        return None
    try:
        dtypes = info().dtypes(device=be.device)
    except Exception:  # a namespace whose info() cannot answer for this device
        return None
    return set(dtypes)
