"""Input checks at the library's boundary, so bad input fails early and clearly.

Every message names the place (layer or function), what was expected, what
was got, and a fix. The NumPy path is kept to attribute reads: these run on
every forward pass.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

from .backends import NUMPY_NS, adapter_of, namespace

__all__ = [
    "HALF_PRECISIONS",
    "as_indices",
    "check_array",
    "check_int",
    "check_same_device",
    "dtype_name",
    "is_float",
    "is_half",
    "upcast",
    "is_traced",
    "real_number",
]


def real_number(
    where: str,
    name: str,
    value: Any,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """``value`` as a Python float, once checked to be a finite real number in the given range.

    The one check for scalar settings (layer and optimizer hyperparameters,
    gradcheck tolerances): Python ints and floats and real NumPy scalars
    (``np.float32``, ``np.float64``, ``np.int64``...) are accepted alike;
    bools (also ``np.bool_``), complex numbers, strings and arrays are not.
    ``lo``/``hi`` bound the range (closed unless ``lo_open``/``hi_open``) and
    are shown as given, e.g. ``[0, 1)``.

    Raises:
        ValueError: ``"{where}: {name} must be a finite number {range}, got {value!r}."``
    """
    if (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(value)
        and (value > lo if lo_open else value >= lo)
        and (value < hi if hi_open else value <= hi)
    ):
        return float(value)
    if math.isinf(hi):
        bound = "" if math.isinf(lo) else f" {'>' if lo_open else '>='} {lo}"
    else:
        bound = f" in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    raise ValueError(f"{where}: {name} must be a finite number{bound}, got {value!r}.")


def check_int(where: str, name: str, value: Any, lo: int) -> int:
    """``value`` as an int, checked to be an integer (not a bool) ``>= lo``.

    ``where`` (a layer's or function's name) and ``name`` (the argument's) go
    into the message.

    Raises:
        TypeError: not an int (NumPy integers count; bools do not).
        ValueError: below ``lo``.

    >>> from portable_nn.layers.base import check_int
    >>> check_int("MyLayer", "features", 8, 1)
    8
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an int, got {type(value).__name__}.")
    if value < lo:
        raise ValueError(f"{where}: {name} must be >= {lo}, got {value}.")
    return int(value)


def is_float(xp: Any, dtype: Any) -> bool:
    """True for a real floating dtype of namespace ``xp``."""
    if isinstance(dtype, np.dtype):
        return dtype.kind == "f" or dtype.name == "bfloat16"  # ml_dtypes' bfloat16 (JAX's) is kind 'V'
    return bool(xp.isdtype(dtype, "real floating"))


HALF_PRECISIONS = ("bfloat16", "float16")
"""The half precisions mixed-precision training computes in (outside the Array API standard)."""


def is_half(dtype: Any) -> bool:
    """True for a half-precision float dtype (``bfloat16``, ``float16``) of any library.

    >>> import numpy as np
    >>> from portable_nn.layers.base import is_half
    >>> is_half(np.dtype("float16")), is_half(np.dtype("float32"))
    (True, False)
    """
    return dtype_name(dtype) in HALF_PRECISIONS


def upcast(xp: Any, X: Any) -> Any:
    """``X`` in float32 when it is half precision (``bfloat16``, ``float16``), else ``X`` itself.

    What a layer calls for the computations it keeps in float32 under mixed
    precision (statistics, a softmax: see :attr:`~portable_nn.Layer.float32_ops`);
    it casts its results back to X's dtype itself.

    Args:
        xp: X's namespace.
        X: an array of any float dtype.

    Returns:
        A float32 copy of a bfloat16 or float16 ``X`` (same shape and device);
        any other ``X`` as it is (no copy).

    >>> import numpy as np
    >>> from portable_nn import namespace
    >>> from portable_nn.layers.base import upcast
    >>> X = np.ones(3, dtype="float16")
    >>> upcast(namespace(X), X).dtype, upcast(namespace(X), X.astype("float64")).dtype
    (dtype('float32'), dtype('float64'))
    """
    return xp.astype(X, xp.float32) if is_half(X.dtype) else X


def as_indices(xp: Any, X: Any) -> Any:
    """Integer indices ``X`` as int32 or int64: ``X`` itself when it is one of those, else cast to the
    namespace's default index dtype (int64 on every backend here).

    What a layer that takes indices (:attr:`~portable_nn.Layer.takes_indices`) calls after
    ``check_array(..., kind="index")``: narrow ids (``uint8``, ``int8``, ``int16``...) save memory but
    cannot take part in index arithmetic. ``xp.arange(V, dtype=X.dtype)`` wraps around or raises
    past the dtype's range, a comparison ``X >= V`` with such a ``V`` does too, and torch's ``take``
    accepts int32 and int64 indices only.
    """
    if X.dtype == xp.int64 or X.dtype == xp.int32:
        return X
    device = array_api_compat.device(X)
    try:
        index = xp.__array_namespace_info__().default_dtypes(device=device)["indexing"]
    except (AttributeError, KeyError, TypeError):
        index = xp.int64
    return xp.astype(X, index)


def is_traced(X: Any) -> bool:
    """True while ``X``'s values are unknown: traced by ``jax.jit`` or compiled by ``torch.compile``.

    Host syncs (``bool(...)`` on an array) must be skipped then. Each backend's adapter answers.
    """
    if type(X) is np.ndarray:
        return False
    ad = adapter_of(X)
    return ad is not None and ad.is_traced(X)


def dtype_name(dtype: Any) -> str:
    """A dtype's name in any library: ``"float32"`` for ``numpy.float32``, ``torch.float32``, ``xp.float32``...

    >>> import numpy as np
    >>> from portable_nn.layers.base import dtype_name
    >>> dtype_name(np.dtype("float64"))
    'float64'
    """
    return str(dtype).rpartition(".")[2]


def check_array(
    where: Any,
    X: Any,
    *,
    like: Any = None,
    ndim: int | None = None,
    features: int | None = None,
    name: str = "X",
    xp: Any = None,
    like_name: str = "the params",
    axes: str | None = None,
    kind: str = "float",
) -> Any:
    """Check one input of a layer or loss and return its namespace.

    Args:
        where: the layer (its repr is used, only when raising) or a function name.
        X: the array to check.
        like: a param array of the layer; X must share its namespace, device and dtype.
        ndim: required number of dimensions, if any.
        features: required size of the last axis, if any.
        name: how the message calls X.
        like_name: how the message calls ``like`` (e.g. ``"Y"`` in a loss).
        axes: the expected axes for the message, e.g. ``"(batch, in_features)"``
            or ``"(batch, channels, height, width)"``.
        kind: ``"float"`` (default): X must have ``like``'s real floating dtype;
            ``"index"``: X must be integer (token or category indices, e.g.
            for an embedding); ``like`` then fixes only its namespace and device.

    Raises:
        TypeError: not an array, the wrong kind of dtype (float for ``"index"``,
            integer for ``"float"``), another namespace or dtype than ``like``.
        ValueError: wrong ndim or feature count, another device than ``like``.
    """
    if (
        kind == "float"
        and type(X) is np.ndarray
        and (xp is None or xp is NUMPY_NS)
        and X.dtype.kind == "f"
        and (like is None or (type(like) is np.ndarray and like.dtype == X.dtype))
        and (ndim is None or X.ndim == ndim)
        and (features is None or (X.ndim > 0 and X.shape[-1] == features))
    ):
        return NUMPY_NS  # the common case, checked with attribute reads only
    if kind not in ("float", "index"):
        raise ValueError(f"check_array: kind must be 'float' or 'index', got {kind!r}.")
    if not isinstance(where, str):
        where = repr(where)
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        raise TypeError(
            f"{where}: {name} must be an array, got {type(X).__name__}. "
            "Convert host data with be.asarray(data, dtype='float32')."
        )
    if like is None:
        xp = namespace(X, xp=xp)
    else:
        # Checked even when xp is given: a passed namespace must not hide mixed inputs.
        try:
            ns = namespace(X, like)
        except TypeError as e:
            other = "the layer's params" if like_name == "the params" else like_name
            raise TypeError(f"{where}: {name} and {other}: {e}") from None
        xp = ns if xp is None else xp
    if kind == "index":
        if not xp.isdtype(X.dtype, "integral"):
            raise TypeError(
                f"{where}: {name} has dtype {X.dtype}, but this layer takes integer indices "
                f"(e.g. token ids). Pass them as integers, e.g. be.asarray(ids, dtype='int64'); "
                "do not cast them to float."
            )
    elif not is_float(xp, X.dtype):
        raise TypeError(
            f"{where}: {name} has dtype {X.dtype}, a real floating dtype is needed. "
            f"Convert it, e.g. be.asarray(data, dtype='float64') or xp.astype({name}, xp.float32)."
        )
    if ndim is not None and X.ndim != ndim:
        layout = f" {axes}" if axes else ""
        fix = " Reshape it, e.g. X.reshape(n_samples, -1)." if ndim == 2 else ""
        raise ValueError(
            f"{where}: {name} must have {ndim} dimensions{layout}, got shape {tuple(X.shape)}.{fix}"
        )
    if features is not None and (X.ndim == 0 or X.shape[-1] != features):
        raise ValueError(
            f"{where}: {name} must have {features} features on its last axis, got shape "
            f"{tuple(X.shape)}. Check the layer's in_features against the data's columns."
        )
    if like is not None:
        if kind == "float" and X.dtype != like.dtype:
            raise TypeError(
                f"{where}: {name} has dtype {X.dtype} but {like_name} {_are(like_name)} {like.dtype}. "
                f"Cast the data to {dtype_name(like.dtype)} or init the model with that dtype."
            )
        check_same_device(where, name, X, like, like_name)
    return xp


def check_same_device(where: str, name: str, X: Any, like: Any, like_name: str = "the params") -> None:
    """Raise ValueError when ``X`` and ``like`` (same namespace) are on different devices."""
    if type(X) is np.ndarray:
        return
    dx, dp = array_api_compat.device(X), array_api_compat.device(like)
    if dx != dp:
        raise ValueError(
            f"{where}: {name} is on device {dx} but {like_name} {_are(like_name)} on {dp}. "
            "Move one of them, e.g. pnn.to_backend(params, be) or be.asarray(X)."
        )


def _are(like_name: str) -> str:
    return "are" if like_name.endswith("params") else "is"
