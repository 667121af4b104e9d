"""Floating precisions: which ones a backend's device computes in, found by trying them.

A precision counts as available on a device when an array of it can be made
there, the namespace's ``isdtype`` calls it real floating, a matmul keeps it
(a layer's output has its params' dtype) and gives the right values, and
``astype`` brings it back to float32. Each adapter asks :func:`probe` once per
device and keeps the answers (see ``Adapter.precisions``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["LOW_PRECISIONS", "PRECISIONS", "ml_dtypes_bfloat16", "probe"]

PRECISIONS = ("float32", "float64", "bfloat16", "float16")
"""Every precision a backend may have, in the order :func:`~portable_nn.available_precisions` lists them."""
LOW_PRECISIONS = ("bfloat16", "float16")
"""The 16-bit ones, which some libraries or devices lack."""


def probe(xp: Any, dtype: Any, device: Any) -> str | None:
    """None when arrays of ``dtype`` work on ``device`` as the layers need them; else why not, in words."""
    name = _name(dtype)
    space = getattr(xp, "__name__", "the namespace")
    try:
        A = xp.asarray([[1.0, 2.0], [3.0, 4.0]], dtype=dtype, device=device)
        Y = A @ A
        back = xp.astype(Y, xp.float32)
        right = bool(xp.all(back == xp.asarray([[7.0, 10.0], [15.0, 22.0]], dtype=xp.float32, device=device)))
    except Exception as e:  # any failure means: not usable here; say which
        return f"{name} arrays fail there ({type(e).__name__}: {e})"
    problems = []
    try:
        floating = bool(xp.isdtype(A.dtype, "real floating"))
    except Exception:  # NumPy's isdtype raises for dtypes it does not know (ml_dtypes')
        floating = False
    if not floating:
        problems.append(f"{space}.isdtype does not count {name} as a real floating dtype")
    if Y.dtype != A.dtype:
        problems.append(f"a matmul of {name} arrays gives {_name(Y.dtype)}")
    if problems:
        return " and ".join(problems) + " (layers check their inputs' dtype and keep their params')"
    return None if right else f"a {name} matmul gave wrong values"


def _name(dtype: Any) -> str:
    return str(dtype).rpartition(".")[2]


def ml_dtypes_bfloat16(library: str = "NumPy") -> Any:
    """``numpy.dtype(ml_dtypes.bfloat16)``: the bfloat16 that NumPy (and CuPy) arrays can hold.

    Raises:
        LookupError: ml_dtypes is not installed; the message says how to install it.
    """
    try:
        import ml_dtypes
    except ImportError:
        raise LookupError(
            f"{library} has no bfloat16 of its own, and ml_dtypes, which adds one, is not installed here "
            "(pip install ml_dtypes)"
        ) from None
    import numpy as np

    return np.dtype(ml_dtypes.bfloat16)
