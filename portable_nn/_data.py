"""Moving user data onto the params' backend for fit/predict, with checks."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from ._backend import namespace, to_numpy
from ._check import dtype_name, is_float
from ._tree import tree_leaves

__all__ = ["params_backend", "as_data", "check_finite"]


def params_backend(params: Any, where: str) -> tuple[Any, Any, Any]:
    """Namespace, device and dtype shared by all leaves of ``params``."""
    leaves = tree_leaves(params)
    if not leaves:
        raise ValueError(f"{where}: params has no arrays; pass the result of model.init(...).")
    try:
        xp = namespace(*leaves)
    except TypeError as e:
        raise TypeError(f"{where}: params mix array libraries: {e}") from None
    device = array_api_compat.device(leaves[0])
    for leaf in leaves[1:]:
        if array_api_compat.device(leaf) != device:
            raise ValueError(
                f"{where}: params are on several devices ({device} and {array_api_compat.device(leaf)}). "
                "Move them with pnn.to_backend(params, be)."
            )
    return xp, device, leaves[0].dtype


def as_data(where: str, name: str, A: Any, xp: Any, device: Any, dtype: Any, *, labels_ok: bool) -> Any:
    """Return ``A`` as an array of ``xp`` on ``device``.

    Host data (NumPy arrays, lists) is copied over; floating data is cast to
    the params' ``dtype``. Integer data is kept only where labels are allowed
    (``labels_ok``). Arrays of another library or device raise: they are
    never converted silently.
    """
    if A is None:
        raise TypeError(f"{where}: {name} is None; pass an array.")
    is_host = isinstance(A, (np.ndarray, list, tuple)) or np.isscalar(A)
    if not is_host:
        try:
            ns = namespace(A)
        except TypeError:
            raise TypeError(f"{where}: {name} is a {type(A).__name__}, not an array.") from None
        if ns is not xp:
            raise TypeError(
                f"{where}: {name} is an array of {ns.__name__} but the params are {xp.__name__}. "
                "Move one side explicitly: be.asarray(pnn.to_numpy(X)) or pnn.to_backend(params, be)."
            )
        if array_api_compat.device(A) != device:
            raise ValueError(
                f"{where}: {name} is on device {array_api_compat.device(A)} but the params are on {device}. "
                "Move it with be.asarray(...) or the params with pnn.to_backend(...)."
            )
        kind_float = is_float(xp, A.dtype)
        kind_int = bool(xp.isdtype(A.dtype, "integral"))
    else:
        try:
            A = np.asarray(A)
        except ValueError as e:  # ragged nested lists
            raise ValueError(
                f"{where}: {name} is not a rectangular array ({e}). Pad or fix the rows so all have one length."
            ) from None
        kind_float, kind_int = A.dtype.kind == "f", A.dtype.kind in "iu"
    if kind_float:
        if is_host:
            A = A.astype(dtype_name(dtype), copy=False)
        elif A.dtype != dtype:
            A = xp.astype(A, dtype)
    elif not (labels_ok and kind_int):
        want = "float or integer labels" if labels_ok else "floating"
        raise TypeError(
            f"{where}: {name} has dtype {A.dtype}; {want} data is needed. "
            f"Convert it explicitly, e.g. be.asarray({name}, dtype='{dtype_name(dtype)}')."
        )
    if is_host:
        A = xp.asarray(A, device=device) if xp is not np else A
    if A.ndim == 0:
        raise ValueError(f"{where}: {name} must have a batch axis, got a 0-d array.")
    return A


def check_finite(where: str, name: str, A: Any, xp: Any) -> None:
    """Raise ValueError naming the first row of ``A`` with NaN or inf."""
    if not is_float(xp, A.dtype) or bool(xp.all(xp.isfinite(A))):
        return
    host = to_numpy(A).reshape(A.shape[0], -1)
    row = int(np.flatnonzero(~np.isfinite(host).all(axis=1))[0])
    raise ValueError(
        f"{where}: {name} contains NaN or inf (first at row {row}: {host[row][:8].tolist()}). "
        "Clean or impute the data before training."
    )
