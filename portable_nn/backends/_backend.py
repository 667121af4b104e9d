"""Backend: an array library, its Array API namespace ``xp`` and a device; namespace(); to_numpy().

Numeric code never reads the default backend: it takes the namespace from its
input arrays with :func:`namespace`. Only code that has no array yet (weight
init, converting user data) asks :func:`~portable_nn.get_backend`. What is
specific to one library lives in its adapter (``backends/<name>.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import array_api_compat
import array_api_compat.numpy  # the wrapped namespace that namespace() maps back to NumPy
import numpy as np

from .._errors import PrecisionError
from ._adapter import Adapter, adapter
from ._precision import LOW_PRECISIONS
from ._table import ADAPTERS

__all__ = ["NUMPY_NS", "Backend", "adapter_of", "namespace", "to_numpy", "widest_float_dtype"]

_DTYPE_NAMES = ("float32", "float64", "bfloat16", "float16", "int8", "int16", "int32", "int64", "uint8", "bool")

# NumPy >= 2 implements the standard itself; calling it directly avoids the
# ~1-2 us a call that array_api_compat's wrapper costs on tiny arrays.
_NUMPY_IS_ARRAY_API = hasattr(np, "astype") and hasattr(np, "__array_namespace_info__")
NUMPY_NS: Any = np if _NUMPY_IS_ARRAY_API else array_api_compat.numpy  # type: ignore[attr-defined]
"""The namespace of NumPy arrays: ``numpy`` itself on NumPy >= 2, ``array_api_compat.numpy`` before."""


def adapter_of(a: Any) -> Adapter | None:
    """The adapter whose library ``a`` belongs to, or None."""
    for name in ADAPTERS:
        ad = adapter(name)
        if ad.owns(a):
            return ad
    return None


def namespace(*arrays: Any, xp: Any = None) -> Any:
    """Return the Array API namespace of ``arrays`` (or ``xp`` when given).

    NumPy arrays give ``numpy`` itself on NumPy >= 2; other libraries give their
    ``array_api_compat`` (or native) namespace.

    Raises:
        TypeError: the inputs come from two different array libraries (the
            message names their types): nothing is ever converted silently.

    >>> import numpy as np
    >>> import portable_nn as pnn
    >>> pnn.namespace(np.ones(3), np.zeros(2)) is np
    True
    """
    if xp is not None:
        return xp
    if all(type(a) is np.ndarray for a in arrays):
        return NUMPY_NS
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


def to_numpy(a: Any) -> np.ndarray:
    """Copy an array of any supported library and device to a ``numpy.ndarray`` (host arrays as they are).

    The result has the array's shape and dtype (bfloat16 as ml_dtypes' bfloat16).

    >>> import portable_nn as pnn
    >>> pnn.to_numpy(pnn.get_backend("array_api_strict").asarray([[1.0, 2.0]]))
    array([[1., 2.]])
    """
    if isinstance(a, np.ndarray):
        return a
    ad = adapter_of(a)
    return np.asarray(a) if ad is None else ad.to_numpy(a)


def widest_float_dtype(a: Any, *, xp: Any = None) -> Any:
    """float64 where array ``a``'s device has it, else that device's default real floating dtype.

    For scalar arithmetic that should be as exact as the device allows (a
    schedule of a 0-d count, bias corrections) on devices without float64 too.
    """
    xp = namespace(a, xp=xp)
    info = xp.__array_namespace_info__()
    device = array_api_compat.device(a)
    found = info.dtypes(device=device, kind="real floating")
    return found["float64"] if "float64" in found else info.default_dtypes(device=device)["real floating"]


@dataclass(frozen=True)
class Backend:
    """An array library and a device on it; made by :func:`~portable_nn.get_backend`.

    >>> import portable_nn as pnn
    >>> be = pnn.get_backend("array_api_strict")
    >>> X = be.asarray([[1, 2], [3, 4]], dtype="float32")     # host data -> this backend and device
    >>> tuple(X.shape), be.to_numpy(X).dtype, be.is_gpu
    ((2, 2), dtype('float32'), False)

    Attributes:
        name: the backend's name (a key of the table: ``"numpy"``, ``"cupy"``,
            ``"torch"``, ``"jax"``, ``"array_api_strict"``).
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
    def adapter(self) -> Adapter:
        """What the library knows about this array library (see ``backends/_adapter.py``)."""
        return adapter(self.name)

    @property
    def is_gpu(self) -> bool:
        """True when arrays live on a GPU (CuPy, torch CUDA, JAX GPU)."""
        return self.adapter.is_gpu(self.device)

    @property
    def device_label(self) -> str:
        """The short device name, e.g. ``"cpu"``, ``"cuda:0"``, ``"gpu:0"``, ``"device1"``."""
        return self.adapter.device_label(self.device)

    def describe_device(self) -> str:
        """The device label with the hardware model for GPUs, e.g. ``"cuda:0 (NVIDIA H200)"``."""
        try:
            return self.adapter.describe_device(self.device)
        except Exception:  # a name is nice to have; never fail a report over it
            return self.device_label

    @contextlib.contextmanager
    def parity_precision(self) -> Iterator[None]:
        """Full float32 matmul precision inside the block: no TF32 on torch CUDA, ``highest`` on JAX."""
        with self.adapter.parity_precision(self.device):
            yield

    def dtype(self, dtype: Any) -> Any:
        """Resolve a dtype name (``"float32"``, ``"float64"``, ``"bfloat16"``, ``"float16"``, ...) or object here.

        Returns:
            The library's dtype: a ``numpy.dtype`` for NumPy, CuPy and JAX
            (``bfloat16`` is ml_dtypes'), ``torch.bfloat16`` etc. for torch;
            a dtype object of this namespace is returned as it is.

        Raises:
            TypeError: the name is not a dtype this library knows.
            PrecisionError: a floating precision this library or device lacks
                (a ``ValueError`` and a ``TypeError``): the message says why,
                what to install where that helps, and the precisions there are
                (:func:`~portable_nn.available_precisions`).
        """
        if not (isinstance(dtype, (str, np.dtype)) or isinstance(dtype, type)):
            return dtype  # a dtype object of this namespace (torch.float32, xp.float64...)
        name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
        if name in LOW_PRECISIONS:
            problem = self.adapter.precision_problem(self.xp, self.device, name)
            if problem is not None:
                answers = self.adapter.precisions(self.xp, self.device)
                raise PrecisionError(
                    f"{self} cannot compute in {name}: {problem}. Precisions here: "
                    f"{', '.join(p for p, why in answers.items() if why is None)}; choose one of those, or a "
                    f"backend with {name} (pnn.available_precisions(backend) answers for each)."
                )
            return self.adapter.precision_dtype(self.xp, name)
        if name not in _DTYPE_NAMES:
            raise TypeError(f"{self}: unknown dtype {dtype!r}; use one of {', '.join(_DTYPE_NAMES)}.")
        supported = _supported_dtype_names(self)
        if supported is not None and name not in supported:
            raise PrecisionError(
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
            dtype: target dtype name or object; ``None`` keeps the data's own
                (host floats keep their precision where the device has it).

        Returns:
            An array of ``self.xp`` on ``self.device``, same shape as ``data``.
        """
        dt = None if dtype is None else self.dtype(dtype)
        if self.xp is np:
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
        self.adapter.synchronize(self.device, arrays)


def _supported_dtype_names(be: Backend) -> set[str] | None:
    info = getattr(be.xp, "__array_namespace_info__", None)
    if info is None:
        return None
    try:
        dtypes = info().dtypes(device=be.device)
    except Exception:  # a namespace whose info() cannot answer for this device
        return None
    return set(dtypes)
