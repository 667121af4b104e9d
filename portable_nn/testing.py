"""Testing helpers: gradcheck (finite differences vs backprop) and assert_close."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._check import dtype_name, real_number
from ._errors import GradientCheckError
from ._tree import tree_leaves, tree_paths
from .backends import namespace, to_numpy
from .layers.base import Array, Layer, Params, Variables, apply_model, trainable

__all__ = ["gradcheck", "assert_close"]

_DEFAULTS = {"float64": (1e-6, 1e-5, 1e-8), "float32": (1e-2, 5e-2, 5e-3)}


def assert_close(actual: Any, desired: Any, *, rtol: float = 1e-7, atol: float = 0.0, msg: str = "") -> None:
    """Assert two arrays (any backends and devices) are equal within ``atol + rtol * abs(desired)``, elementwise.

    Both are copied to NumPy and compared with ``numpy.testing.assert_allclose``
    (shapes must match; NaNs in the same places count as equal).

    Raises:
        AssertionError: they differ (the message shows where and by how much, and ``msg``).

    >>> import numpy as np, portable_nn as pnn
    >>> pnn.assert_close(pnn.get_backend("array_api_strict").asarray([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9]), rtol=1e-6)
    """
    np.testing.assert_allclose(to_numpy(actual), to_numpy(desired), rtol=rtol, atol=atol, err_msg=msg)


def _with_leaf(params: Params, path: str, leaf: Array) -> Params:
    """A copy of the params tree with the leaf at ``path`` replaced (others shared)."""
    if not path:
        return leaf
    key, _, rest = path.partition(".")
    if isinstance(params, dict):
        return {**params, key: _with_leaf(params[key], rest, leaf)}
    out = list(params)
    out[int(key)] = _with_leaf(params[int(key)], rest, leaf)
    return out


def _layer_name(model: Layer, path: str) -> str:
    layers = getattr(model, "layers", None)
    head, _, param = path.partition(".")
    if layers is not None and head.isdigit():
        return f"layer {head} ({layers[int(head)]!r}), param {param!r}"
    return f"{model!r}, param {path!r}"


def gradcheck(
    model: Layer,
    params: Params,
    X: Array,
    *,
    loss: Callable[[Array, Array], tuple[Array, Array]],
    T: Array,
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_checks: int = 64,
    seed: int = 0,
) -> None:
    """Compare backprop's gradients with central finite differences.

    The loss is ``loss(model.apply(params, X, train=True)[0], T)[0]``; dropout
    masks are held fixed (the same seed for every evaluation). ``params`` may
    be a stateful model's :class:`Variables` (its state is not differentiated). Up to
    ``max_checks`` randomly chosen elements of each param, and of X, are checked.

    Integer X (token indices for a model whose :attr:`~portable_nn.Layer.takes_indices`)
    has no gradient: only the params are checked then, in their dtype.

    Use float64 (defaults eps=1e-6, rtol=1e-5, atol=1e-8). float32 is accepted
    for devices without float64, with looser defaults (eps=1e-2, rtol=5e-2, atol=5e-3).
    ``None`` picks the default; a number given is used as is (``rtol=0.0``
    means no relative slack), so ``eps`` must be > 0 and the tolerances >= 0.

    Args:
        model: the layer or model to check.
        params: its params (or Variables), float64 preferably, on X's backend and device.
        X: inputs ``(batch, ...)`` of the params' backend (floats, or integer indices).
        loss: ``loss(Y, T) -> (value, dY)``, e.g. ``pnn.losses.mean_squared_error``.
        T: the targets ``loss`` takes, on the same backend.
        eps: the finite-difference step; rtol, atol: the tolerances (None: the defaults above).
        max_checks: elements checked per param (and of X), chosen at random from ``seed``.

    Returns:
        None; it raises on a mismatch. Nothing passed in is modified.

    Raises:
        GradientCheckError: naming the layer, the param and the element that differ.
        TypeError: params are not floating point.
        ValueError: ``eps`` not > 0, or ``rtol``/``atol`` negative (or not finite numbers).

    >>> import numpy as np, portable_nn as pnn
    >>> model = pnn.Sequential(pnn.Linear(3, 4), pnn.Tanh(), pnn.Linear(4, 2))
    >>> params = model.init(seed=0, backend="numpy", dtype="float64")
    >>> X, T = np.random.default_rng(0).standard_normal((5, 3)), np.zeros((5, 2))
    >>> pnn.gradcheck(model, params, X, loss=pnn.losses.mean_squared_error, T=T)   # passes: returns None
    """
    xp = namespace(X)
    index_X = bool(xp.isdtype(X.dtype, "integral"))
    float_leaf = X if not index_X else next(iter(tree_leaves(trainable(params))), None)
    if float_leaf is None:
        raise TypeError("gradcheck: X holds integer indices and the model has no params: nothing to check.")
    dtype = dtype_name(float_leaf.dtype)
    if dtype not in _DEFAULTS:
        what = "X" if not index_X else "the params"
        raise TypeError(f"gradcheck: {what} have dtype {float_leaf.dtype}; use float64 (or float32 without float64).")
    d_eps, d_rtol, d_atol = _DEFAULTS[dtype]
    # None means the default; any number given, 0.0 included, is used as given.
    eps = d_eps if eps is None else real_number("gradcheck", "eps", eps, lo=0.0, lo_open=True)
    rtol = d_rtol if rtol is None else real_number("gradcheck", "rtol", rtol, lo=0.0)
    atol = d_atol if atol is None else real_number("gradcheck", "atol", atol, lo=0.0)
    from array_api_compat import device as device_of

    state = params.state if type(params) is Variables else None  # a model state is held fixed
    params = trainable(params)

    def run(p: Params, x: Array) -> tuple[Array, Any]:
        Y, _, backprop = apply_model(model, p if state is None else Variables(p, state), x, train=True, rng=seed)
        return Y, backprop

    def f(p: Params, x: Array) -> float:
        return float(loss(run(p, x)[0], T)[0])

    Y, backprop = run(params, X)
    dX, grads = backprop(loss(Y, T)[1])
    rng = np.random.default_rng(seed)
    grad_paths = dict(tree_paths(grads))
    targets = [(p, leaf, grad_paths[p]) for p, leaf in tree_paths(params)] + ([] if index_X else [("X", X, dX)])
    for path, leaf, grad in targets:
        host = to_numpy(leaf).astype(np.float64)
        analytic = to_numpy(grad).reshape(-1)
        if analytic.shape != (host.size,):
            raise GradientCheckError(
                f"gradcheck: {_layer_name(model, path)}: grad shape {tuple(grad.shape)} != {host.shape}."
            )
        picks = rng.permutation(host.size)[:max_checks]
        for i in picks:
            values = []
            for sign in (1.0, -1.0):
                bumped = host.copy().reshape(-1)
                bumped[i] += sign * eps
                arr = xp.asarray(bumped.reshape(host.shape).astype(dtype), device=device_of(leaf))
                values.append(f(params, arr) if path == "X" else f(_with_leaf(params, path, arr), X))
            numeric = (values[0] - values[1]) / (2 * eps)
            if not abs(numeric - analytic[i]) <= atol + rtol * abs(numeric):
                where = "input X" if path == "X" else _layer_name(model, path)
                index = np.unravel_index(i, host.shape)
                raise GradientCheckError(
                    f"gradcheck: {where}, element {tuple(int(j) for j in index)}: backprop gives "
                    f"{analytic[i]:.8g}, finite differences give {numeric:.8g} "
                    f"(rtol={rtol}, atol={atol}, eps={eps})."
                )
