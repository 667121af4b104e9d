"""Where the estimators' arrays live: the backend to train on, inputs moved there, outputs moved back.

Without scikit-learn's array API dispatch (its default), NumPy goes in and
NumPy comes out, and training runs on the estimator's ``backend`` (default:
portable_nn's default backend). With ``sklearn.set_config(array_api_dispatch=True)``
an input array of torch, JAX, array-api-strict or CuPy picks the backend and
device to train on (unless ``backend`` is given), and predictions come back
in the input's namespace and on its device; a later call with arrays of
another namespace or device raises, as scikit-learn's own estimators do.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from ..backends import Backend, adapter_of, get_backend, to_numpy
from ..layers.base import dtype_name

__all__ = [
    "HOST",
    "caller_key",
    "check_same_namespace",
    "dispatch",
    "has_dtype",
    "host",
    "input_key",
    "on_backend",
    "output_dtype",
    "spec",
    "to_output",
    "training_backend",
]

HOST = ("numpy", "cpu")


def dispatch() -> bool:
    """True when scikit-learn's ``array_api_dispatch`` is on."""
    from sklearn import get_config

    return bool(get_config().get("array_api_dispatch", False))


def input_key(A: Any) -> tuple[str, str]:
    """``(library, device)`` of an array, e.g. ``("torch", "cpu")``; host data (lists, DataFrames) is :data:`HOST`."""
    ad = adapter_of(A) if hasattr(A, "shape") and hasattr(A, "dtype") else None
    if ad is None or ad.name == "numpy":
        return HOST
    return ad.name, ad.device_label(array_api_compat.device(A))


def caller_key(A: Any) -> tuple[str, str]:
    """Where results for input ``A`` go: :func:`input_key` with dispatch on, :data:`HOST` without."""
    return input_key(A) if dispatch() else HOST


def spec(be: Backend) -> str:
    """The backend spec that :func:`~portable_nn.get_backend` turns back into ``be``, e.g. ``"torch:cpu"``."""
    return f"{be.name}:{be.device_label}"


def training_backend(backend: Any, X: Any) -> Backend:
    """``backend`` when given; else, with dispatch on, the library and device of ``X``; else the default."""
    if backend is not None:
        return get_backend(backend)
    key = input_key(X)
    if dispatch() and key != HOST:
        return get_backend(key[0], device=key[1])
    return get_backend()


def host(A: Any) -> np.ndarray:
    """A NumPy view or copy of an array of any library (host data through ``np.asarray``)."""
    return to_numpy(A) if hasattr(A, "shape") and hasattr(A, "dtype") else np.asarray(A)


def on_backend(A: Any, be: Backend, dtype: str) -> Any:
    """``A`` as a ``dtype`` array of ``be``: cast in place of origin when it is on ``be`` already, else copied
    through host memory (NumPy data of that dtype is used as it is)."""
    key = input_key(A)
    if key != HOST and key == (be.name, be.device_label):
        return be.xp.astype(A, be.dtype(dtype))
    return be.asarray(np.asarray(host(A), dtype=dtype))


def to_output(A: Any, key: tuple[str, str], dtype: str | None = None) -> Any:
    """``A`` (an array of the training backend) moved to ``key`` (see :func:`caller_key`).

    ``dtype``: cast to it (float outputs take the input's float dtype, as in
    scikit-learn), where the caller's device has it (else A's dtype is kept).
    """
    if input_key(A) != key:
        A = to_numpy(A) if key == HOST else get_backend(key[0], device=key[1]).asarray(to_numpy(A))
    if dtype is None:
        return A
    be = get_backend(*key)
    if not has_dtype(be, dtype):  # a device without it (array-api-strict's no_float64)
        return A
    return be.xp.astype(A, be.dtype(dtype), copy=False)


def has_dtype(be: Backend, dtype: str) -> bool:
    """True when ``be``'s device supports ``dtype``."""
    try:
        be.dtype(dtype)
    except TypeError:
        return False
    return True


def output_dtype(X: Any) -> str:
    """The float dtype of outputs for input ``X``: its own when float32 or float64, else float64."""
    name = dtype_name(X.dtype)
    return name if name in ("float32", "float64") else "float64"


def check_same_namespace(estimator: Any, X: Any, method: str) -> None:
    """With dispatch on, raise when ``X``'s library or device differs from what ``fit`` got (scikit-learn's rule)."""
    if not dispatch():
        return
    fitted, got = estimator._input_key, input_key(X)
    if got != tuple(fitted):
        raise ValueError(
            f"Inputs passed to {type(estimator).__name__}.{method}() must use the same namespace and the same "
            f"device as those passed to fit(): fit got {fitted[0]} arrays on {fitted[1]}, {method} got "
            f"{got[0]} on {got[1]} (lists and DataFrames count as numpy). Convert X, or fit again on these arrays."
        )
