"""Losses: each returns ``(value, dY)``, value a 0-d array on Y's device, dY shaped like Y.

Each built-in loss declares how it reduces over the batch in its attribute
``reduction``: ``"sum"`` (:func:`sum_squared_error`: the value grows with the
batch size) or ``"mean"`` (the others: the value is a per-sample average). It
is set by the :func:`reduces` decorator, which user losses may use too; a loss
without the attribute is treated as ``"mean"`` (:func:`reduction_of`).

An empty batch (Y with no elements) raises ``ValueError`` naming the loss and
Y's shape, for every loss: a sum would be a silent 0, a mean NaN.

Every built-in loss takes ``weights=W``, sample weights ``(N,)`` (one per row
of Y, float, on Y's device; ``fit(..., sample_weight=...)`` passes them): a
``"mean"`` loss is then ``sum(w_i l_i) / sum(w_i)`` over the rows' losses
``l_i`` (each the mean over its row's elements or tokens; 0, with a zero dY,
for a batch whose weights are all 0), a ``"sum"`` loss ``sum(w_i l_i)``; dY is
scaled to match. ``weights=None`` is the plain loss, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import array_api_compat

from ._check import as_indices, check_array, check_same_device, is_traced
from .backends import namespace
from .layers.activations import sigmoid
from .layers.base import Array

__all__ = [
    "reduces",
    "reduction_of",
    "sum_squared_error",
    "mean_squared_error",
    "binary_cross_entropy_with_logits",
    "softmax_cross_entropy",
]


_REDUCTIONS = ("mean", "sum")
_Loss = TypeVar("_Loss", bound=Callable[..., Any])


def reduces(reduction: str) -> Callable[[_Loss], _Loss]:
    """Decorator declaring how a loss reduces over the batch: sets ``loss.reduction``.

    Args:
        reduction: ``"mean"`` (the value is an average over samples, so it does
            not depend on the batch size) or ``"sum"`` (a total over samples).

    Raises:
        ValueError: ``reduction`` is neither ``"mean"`` nor ``"sum"``.

    >>> import portable_nn as pnn
    >>> @pnn.losses.reduces("sum")
    ... def sum_abs_error(Y, T):
    ...     xp = pnn.namespace(Y, T)
    ...     return xp.sum(xp.abs(Y - T)), xp.sign(Y - T)     # a loss returns (value, dY)
    >>> pnn.losses.reduction_of(sum_abs_error)
    'sum'
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduces: reduction must be 'mean' or 'sum', got {reduction!r}.")

    def declare(loss: _Loss) -> _Loss:
        loss.reduction = reduction  # type: ignore[attr-defined]
        return loss

    return declare


def reduction_of(loss: Any) -> str:
    """``loss.reduction`` (``"mean"`` or ``"sum"``); ``"mean"`` for a loss that does not declare one.

    ``fit``, ``evaluate`` and the history use it: a ``"mean"`` loss is reported
    as the mean over all rows, a ``"sum"`` loss as the sum over all rows.

    Raises:
        ValueError: the loss declares something else.
    """
    reduction = getattr(loss, "reduction", "mean")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"loss {loss!r} declares reduction {reduction!r}; it must be 'mean' or 'sum'.")
    return str(reduction)


def _nonempty(where: str, Y: Array) -> None:
    """Raise the documented ValueError when Y has no elements (an empty batch)."""
    if _size(Y) == 0:
        raise ValueError(
            f"{where}: empty batch: Y has shape {tuple(Y.shape)}, no elements to compute a loss over. "
            "Pass at least one sample (and one output)."
        )


def _weights(where: str, W: Any, Y: Array, xp: Any) -> None:
    """Check sample weights ``W``: a float ``(N,)`` array of Y's namespace, dtype and device."""
    if W is None:
        return
    check_array(where, W, like=Y, name="weights", xp=xp, like_name="Y")
    if tuple(W.shape) != (Y.shape[0],):
        raise ValueError(
            f"{where}: weights must have shape ({Y.shape[0]},), one per row of Y {tuple(Y.shape)}, got "
            f"{tuple(W.shape)}."
        )


def _rows(W: Array, Y: Array, xp: Any) -> Array:
    """Weights ``(N,)`` shaped to broadcast against Y ``(N, ...)``."""
    return xp.reshape(W, (Y.shape[0],) + (1,) * (Y.ndim - 1))


def _total(W: Array, xp: Any) -> Array:
    """``sum(W)``, or 1 where it is 0: a batch whose rows all weigh 0 has loss 0 and no gradient."""
    total = xp.sum(W)
    return xp.where(total > 0, total, xp.ones_like(total))


def _weighted_mean(L: Array, G: Array, W: Array, xp: Any) -> tuple[Array, Array]:
    """A mean loss from per-element losses ``L`` and gradients ``G`` (Y's shape) and row weights ``W``:
    ``sum_i w_i mean_j L_ij / sum w`` and its gradient."""
    per_row = _size(L) // L.shape[0]
    Wr = _rows(W, L, xp) / (_total(W, xp) * float(per_row))
    return xp.sum(L * Wr), G * Wr


def _targets(where: str, Y: Array, T: Array, xp: Any) -> Any:
    """Check float predictions Y against float targets T of the same shape, namespace, device."""
    xp = check_array(where, Y, name="Y", xp=xp)
    if not hasattr(T, "shape"):
        raise TypeError(f"{where}: T must be an array, got {type(T).__name__}.")
    check_array(where, T, like=Y, name="T", xp=xp, like_name="Y")
    if tuple(Y.shape) != tuple(T.shape):
        raise ValueError(
            f"{where}: Y has shape {tuple(Y.shape)} but T has {tuple(T.shape)}; they must match. "
            "Reshape the targets, e.g. T.reshape(-1, 1) for one output."
        )
    _nonempty(where, Y)
    return xp


@reduces("sum")
def sum_squared_error(Y: Array, T: Array, *, weights: Array | None = None, xp: Any = None) -> tuple[Array, Array]:
    """``sum((Y - T)**2)``, the notebook's loss.

    Args:
        Y: predictions, any shape, a real floating dtype.
        T: targets, same shape, dtype, namespace and device as Y.
        weights: ``(N,)`` row weights: ``sum_i w_i sum_j (Y - T)_ij**2`` (see the module docstring).
        xp: Y's namespace, to skip looking it up (optional).

    Returns:
        ``(loss, dY)``: a 0-d array and ``2 * (Y - T)`` (times each row's weight), both of Y's dtype,
        namespace and device. Its ``reduction`` is ``"sum"``: the value grows with the batch.

    Raises:
        TypeError: Y, T or weights not a real floating array, or of another dtype or library than Y.
        ValueError: shapes differ (weights: not ``(N,)``), on another device, or an empty batch.

    >>> import numpy as np, portable_nn as pnn
    >>> loss, dY = pnn.losses.sum_squared_error(np.array([[1.0], [3.0]]), np.array([[0.0], [1.0]]))
    >>> float(loss), dY.tolist()
    (5.0, [[2.0], [4.0]])
    """
    xp = _targets("sum_squared_error", Y, T, xp)
    _weights("sum_squared_error", weights, Y, xp)
    return _sse(Y, T, xp, weights)


def _sse(Y: Array, T: Array, xp: Any, W: Array | None = None) -> tuple[Array, Array]:
    D = Y - T
    if W is None:
        return xp.sum(D * D), 2.0 * D
    Wr = _rows(W, Y, xp)
    return xp.sum(D * D * Wr), 2.0 * D * Wr


@reduces("mean")
def mean_squared_error(Y: Array, T: Array, *, weights: Array | None = None, xp: Any = None) -> tuple[Array, Array]:
    """``mean((Y - T)**2)`` over all elements.

    Args:
        Y: predictions, any shape, a real floating dtype.
        T: targets, same shape, dtype, namespace and device as Y.
        weights: ``(N,)`` row weights: the weighted mean of the rows' means (see the module docstring).
        xp: Y's namespace, to skip looking it up (optional).

    Returns:
        ``(loss, 2 (Y - T) / Y.size)``: a 0-d array and an array shaped like Y, of Y's dtype and device.

    Raises:
        TypeError: Y, T or weights not a real floating array, or of another dtype or library than Y.
        ValueError: shapes differ (weights: not ``(N,)``), on another device, or an empty batch.

    >>> import numpy as np, portable_nn as pnn
    >>> loss, dY = pnn.losses.mean_squared_error(np.array([[1.0], [3.0]]), np.array([[0.0], [1.0]]))
    >>> float(loss), dY.tolist()
    (2.5, [[1.0], [2.0]])
    """
    xp = _targets("mean_squared_error", Y, T, xp)
    _weights("mean_squared_error", weights, Y, xp)
    return _mse(Y, T, xp, weights)


def _mse(Y: Array, T: Array, xp: Any, W: Array | None = None) -> tuple[Array, Array]:
    D = Y - T
    if W is None:
        return xp.mean(D * D), (2.0 / _size(Y)) * D
    return _weighted_mean(D * D, 2.0 * D, W, xp)


@reduces("mean")
def binary_cross_entropy_with_logits(
    Y: Array, T: Array, *, weights: Array | None = None, xp: Any = None
) -> tuple[Array, Array]:
    """Mean binary cross-entropy of logits ``Y`` against targets ``T`` in [0, 1].

    Uses ``max(Y, 0) - Y T + log1p(exp(-abs(Y)))``, which cannot overflow.

    Args:
        Y: logits, any shape (e.g. ``(N, 1)`` or ``(N, labels)`` for multilabel), a real floating dtype.
        T: targets in [0, 1], same shape, dtype, namespace and device as Y.
        weights: ``(N,)`` row weights: the weighted mean of the rows' means (see the module docstring).
        xp: Y's namespace, to skip looking it up (optional).

    Returns:
        ``(loss, (sigmoid(Y) - T) / Y.size)``: a 0-d array and an array shaped like Y.

    Raises:
        TypeError: Y, T or weights not a real floating array, or of another dtype or library than Y.
        ValueError: shapes differ (weights: not ``(N,)``), on another device, or an empty batch.

    >>> import numpy as np, portable_nn as pnn
    >>> loss, dY = pnn.losses.binary_cross_entropy_with_logits(np.array([0.0, 1e4]), np.array([1.0, 1.0]))
    >>> round(float(loss), 4), dY.tolist()
    (0.3466, [-0.25, 0.0])
    """
    xp = _targets("binary_cross_entropy_with_logits", Y, T, xp)
    _weights("binary_cross_entropy_with_logits", weights, Y, xp)
    return _bce(Y, T, xp, weights)


def _bce(Y: Array, T: Array, xp: Any, W: Array | None = None) -> tuple[Array, Array]:
    losses = xp.maximum(Y, 0.0) - Y * T + xp.log1p(xp.exp(-xp.abs(Y)))
    if W is None:
        return xp.mean(losses), (sigmoid(Y, xp) - T) / float(_size(Y))
    return _weighted_mean(losses, sigmoid(Y, xp) - T, W, xp)


@reduces("mean")
def softmax_cross_entropy(
    Y: Array, labels: Array, *, weights: Array | None = None, xp: Any = None
) -> tuple[Array, Array]:
    """Mean cross-entropy of logits ``Y`` against integer class labels.

    Shapes: Y ``(N, C)`` with labels ``(N,)``, or a sequence model's logits
    ``(N, ..., C)`` (e.g. ``(batch, seq, vocab)``) with labels ``(N, ...)``:
    the mean is then over every token, ``N * seq`` of them. Stable for large
    logits: log-softmax is computed after subtracting each row's max. With
    ``weights`` ``(N,)``: the weighted mean of the rows' losses, a row's loss
    being the mean over its tokens (see the module docstring).

    Args:
        Y: logits ``(N, C)``, a real floating dtype.
        labels: class indices ``(N,)``, an integer dtype, Y's namespace and device.
        weights: ``(N,)`` row weights of Y's dtype, namespace and device (None:
            unweighted): the weighted mean of the rows' losses.
        xp: Y's namespace, to skip looking it up (optional).

    Returns:
        ``(loss, (softmax(Y) - onehot(labels)) / M)``, a 0-d array and dY shaped
        like Y, of Y's dtype, where M is the number of labels (``labels.size``);
        with weights, row i's part of dY is ``(softmax(Y) - onehot(labels)) * w_i / (T * sum(w))``,
        T the tokens per row.

    Raises:
        TypeError: Y not a real floating array; labels not integer (one-hot or
            float labels), or of another namespace than Y; weights not float.
        ValueError: labels not of shape ``Y.shape[:-1]`` (both shapes named), Y
            with fewer than 2 dimensions, labels on another device, an empty
            batch, weights not ``(N,)``, or a label outside [0, C) (checked on
            the host, except inside ``jax.jit``).

    >>> import numpy as np, portable_nn as pnn
    >>> loss, dY = pnn.losses.softmax_cross_entropy(np.array([[0.0, 0.0], [0.0, 0.0]]), np.array([0, 1]))
    >>> round(float(loss), 4), dY.tolist()
    (0.6931, [[-0.25, 0.25], [0.25, -0.25]])
    >>> Y, labels = np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([0, 0])
    >>> loss, dY = pnn.losses.softmax_cross_entropy(Y, labels, weights=np.array([1.0, 0.0]))
    >>> round(float(loss), 4), bool((dY[1] == 0).all())             # row 1 weighs 0: left out
    (0.1269, True)
    """
    where = "softmax_cross_entropy"
    xp = check_array(where, Y, name="Y (logits)", xp=xp)
    if Y.ndim < 2:
        raise ValueError(
            f"{where}: Y (logits) must have at least 2 dimensions (batch, ..., classes), got shape "
            f"{tuple(Y.shape)}."
        )
    if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
        raise TypeError(f"{where}: labels must be an integer array, got {type(labels).__name__}.")
    try:
        namespace(Y, labels)
    except TypeError as e:
        raise TypeError(f"{where}: labels and Y (logits): {e}") from None
    check_same_device(where, "labels", labels, Y, "Y (logits)")
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(
            f"{where}: labels have dtype {labels.dtype}; integer class indices are needed "
            f"(not one-hot or float). Convert with be.asarray(labels, dtype='int64')."
        )
    C = Y.shape[-1]
    want = tuple(Y.shape[:-1])
    if tuple(labels.shape) != want:
        rows = f" ({Y.shape[0]} rows)" if Y.ndim == 2 else ""
        raise ValueError(
            f"{where}: labels have shape {tuple(labels.shape)} but Y (logits) has shape {tuple(Y.shape)}"
            f"{rows}; labels must have shape {want}, one class index per row of logits."
        )
    _nonempty(where, Y)
    labels = as_indices(xp, labels)  # uint8 labels: C and the classes' arange may not fit their dtype
    # One host sync; skipped while tracing (jax.jit), where values are not known.
    if not is_traced(labels) and bool(xp.any((labels < 0) | (labels >= C))):
        lo, hi = int(xp.min(labels)), int(xp.max(labels))
        raise ValueError(
            f"{where}: labels must be in [0, {C}) for {C} classes, got values in [{lo}, {hi}]. "
            "Check the number of output units or re-encode the labels."
        )
    _weights(where, weights, Y, xp)
    return _sce(Y, labels, xp, weights)


def _sce(Y: Array, labels: Array, xp: Any, W: Array | None = None) -> tuple[Array, Array]:
    if Y.ndim != 2:  # (N, ..., C): every token is a row (of its row's weight)
        Wt = None if W is None else xp.reshape(xp.broadcast_to(_rows(W, labels, xp), labels.shape), (-1,))
        loss, dY = _sce(xp.reshape(Y, (-1, Y.shape[-1])), xp.reshape(labels, (-1,)), xp, Wt)
        return loss, xp.reshape(dY, Y.shape)
    N, C = Y.shape
    labels = as_indices(xp, labels)
    classes = xp.arange(C, dtype=labels.dtype, device=array_api_compat.device(Y))
    onehot = xp.astype(labels[:, None] == classes[None, :], Y.dtype)
    Z = Y - xp.max(Y, axis=1, keepdims=True)
    logsumexp = xp.log(xp.sum(xp.exp(Z), axis=1, keepdims=True))
    logp = Z - logsumexp
    if W is None:
        loss = -xp.sum(logp * onehot) / float(N)
        return loss, (xp.exp(logp) - onehot) / float(N)
    Wr = W[:, None] / _total(W, xp)
    return -xp.sum(logp * onehot * Wr), (xp.exp(logp) - onehot) * Wr


_UNCHECKED: dict[Any, Callable[..., tuple[Array, Array]]] = {
    sum_squared_error: _sse,
    mean_squared_error: _mse,
    binary_cross_entropy_with_logits: _bce,
    softmax_cross_entropy: _sce,
}


def unchecked(loss: Any, xp: Any) -> Any:
    """The built-in ``loss`` without its entry checks, for arrays of ``xp`` (same arithmetic, same results).

    For :func:`fit`, which checks the data, the labels' range and the targets
    against the model's output once before training: the checks (the label
    range is a host read) then cost nothing per step. Any other loss is
    returned as it is.
    """
    # by identity, not a dict lookup: a user's loss may be unhashable (a dataclass instance) or compare equal
    fast = next((f for checked, f in _UNCHECKED.items() if checked is loss), None)
    if fast is None:
        return loss

    def run(Y: Array, T: Array, weights: Array | None = None) -> tuple[Array, Array]:
        return fast(Y, T, xp, weights)

    run.reduction = loss.reduction  # type: ignore[attr-defined]
    run.__name__ = run.__qualname__ = getattr(loss, "__name__", "loss")
    return run


def _size(Y: Array) -> int:
    n = 1
    for s in Y.shape:
        n *= int(s)
    return n
