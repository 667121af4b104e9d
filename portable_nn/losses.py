"""Losses: each returns ``(value, dY)``, value a 0-d array on Y's device, dY shaped like Y.

Each built-in loss declares how it reduces over the batch in its attribute
``reduction``: ``"sum"`` (:func:`sum_squared_error`: the value grows with the
batch size) or ``"mean"`` (the others: the value is a per-sample average). It
is set by the :func:`reduces` decorator, which user losses may use too; a loss
without the attribute is treated as ``"mean"`` (:func:`reduction_of`).

An empty batch (Y with no elements) raises ``ValueError`` naming the loss and
Y's shape, for every loss: a sum would be a silent 0, a mean NaN.
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

    Example:
        >>> @reduces("sum")
        ... def my_loss(Y, T): ...
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduces: reduction must be 'mean' or 'sum', got {reduction!r}.")

    def declare(loss: _Loss) -> _Loss:
        loss.reduction = reduction  # type: ignore[attr-defined]
        return loss

    return declare


def reduction_of(loss: Any) -> str:
    """``loss.reduction`` (``"mean"`` or ``"sum"``); ``"mean"`` for a loss that does not declare one.

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
def sum_squared_error(Y: Array, T: Array, *, xp: Any = None) -> tuple[Array, Array]:
    """``sum((Y - T)**2)``, the notebook's loss.

    Args:
        Y: predictions, any shape, float.
        T: targets, same shape, dtype, namespace and device as Y.

    Returns:
        ``(loss, dY)``: a 0-d array and ``2 * (Y - T)``.
    """
    return _sse(Y, T, _targets("sum_squared_error", Y, T, xp))


def _sse(Y: Array, T: Array, xp: Any) -> tuple[Array, Array]:
    D = Y - T
    return xp.sum(D * D), 2.0 * D


@reduces("mean")
def mean_squared_error(Y: Array, T: Array, *, xp: Any = None) -> tuple[Array, Array]:
    """``mean((Y - T)**2)`` over all elements. Returns ``(loss, 2 (Y - T) / Y.size)``."""
    return _mse(Y, T, _targets("mean_squared_error", Y, T, xp))


def _mse(Y: Array, T: Array, xp: Any) -> tuple[Array, Array]:
    D = Y - T
    return xp.mean(D * D), (2.0 / _size(Y)) * D


@reduces("mean")
def binary_cross_entropy_with_logits(Y: Array, T: Array, *, xp: Any = None) -> tuple[Array, Array]:
    """Mean binary cross-entropy of logits ``Y`` against targets ``T`` in [0, 1].

    Uses ``max(Y, 0) - Y T + log1p(exp(-|Y|))``, which cannot overflow.

    Returns:
        ``(loss, (sigmoid(Y) - T) / Y.size)``.
    """
    return _bce(Y, T, _targets("binary_cross_entropy_with_logits", Y, T, xp))


def _bce(Y: Array, T: Array, xp: Any) -> tuple[Array, Array]:
    losses = xp.maximum(Y, 0.0) - Y * T + xp.log1p(xp.exp(-xp.abs(Y)))
    return xp.mean(losses), (sigmoid(Y, xp) - T) / float(_size(Y))


@reduces("mean")
def softmax_cross_entropy(Y: Array, labels: Array, *, xp: Any = None) -> tuple[Array, Array]:
    """Mean cross-entropy of logits ``Y`` against integer class labels.

    Shapes: Y ``(N, C)`` with labels ``(N,)``, or a sequence model's logits
    ``(N, ..., C)`` (e.g. ``(batch, seq, vocab)``) with labels ``(N, ...)``:
    the mean is then over every token, ``N * seq`` of them. Stable for large
    logits: log-softmax is computed after subtracting each row's max.

    Returns:
        ``(loss, (softmax(Y) - onehot(labels)) / M)``, a 0-d array and dY shaped
        like Y, where M is the number of labels (``labels.size``).

    Raises:
        TypeError: labels not integer, or another namespace than Y.
        ValueError: labels not of shape ``Y.shape[:-1]`` (both shapes named),
            Y with fewer than 2 dimensions, or a label outside [0, C).
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
    return _sce(Y, labels, xp)


def _sce(Y: Array, labels: Array, xp: Any) -> tuple[Array, Array]:
    if Y.ndim != 2:  # (N, ..., C): every token is a row
        loss, dY = _sce(xp.reshape(Y, (-1, Y.shape[-1])), xp.reshape(labels, (-1,)), xp)
        return loss, xp.reshape(dY, Y.shape)
    N, C = Y.shape
    labels = as_indices(xp, labels)
    classes = xp.arange(C, dtype=labels.dtype, device=array_api_compat.device(Y))
    onehot = xp.astype(labels[:, None] == classes[None, :], Y.dtype)
    Z = Y - xp.max(Y, axis=1, keepdims=True)
    logsumexp = xp.log(xp.sum(xp.exp(Z), axis=1, keepdims=True))
    logp = Z - logsumexp
    loss = -xp.sum(logp * onehot) / float(N)
    return loss, (xp.exp(logp) - onehot) / float(N)


_UNCHECKED: dict[Any, Callable[[Array, Array, Any], tuple[Array, Array]]] = {
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

    def run(Y: Array, T: Array) -> tuple[Array, Array]:
        return fast(Y, T, xp)

    run.reduction = loss.reduction  # type: ignore[attr-defined]
    run.__name__ = run.__qualname__ = getattr(loss, "__name__", "loss")
    return run


def _size(Y: Array) -> int:
    n = 1
    for s in Y.shape:
        n *= int(s)
    return n
