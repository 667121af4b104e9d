"""The estimators' losses: scikit-learn's MLP losses, and sample weights for the generic wrappers' losses.

scikit-learn's losses take the model's raw outputs (logits for classifiers)
and scale exactly as scikit-learn's MLP does, so ``loss_curve_`` means the
same thing and ``tol`` the same amount. Each takes optional sample weights
``weights`` ``(n,)``: a batch's loss is then ``sum(w_i l_i) / sum(w_i)`` and
its gradient ``w_i dl_i / sum(w_i)``, as scikit-learn weighs them (without
weights: ``w_i = 1``, computed by the unweighted formulas, bit for bit as before):

- :func:`log_loss`: ``-sum(T * log softmax(Y))`` per row against one-hot T;
- :func:`binary_log_loss`: binary cross-entropy summed over the outputs;
- :func:`half_squared_error`: ``mean_k((Y - T)**2) / 2`` per row, with scikit-learn's
  gradient ``(Y - T)`` per row (not divided by the outputs).

The generic wrappers train with any portable_nn loss; with sample weights the
loss must take ``weights=`` (:func:`loss_for_weights`), and the two defaults,
``pnn.losses.softmax_cross_entropy`` and ``mean_squared_error``, are given
weighted equivalents here.
"""

from __future__ import annotations

import inspect
from typing import Any

import array_api_compat

from ..backends import namespace
from ..layers.activations import sigmoid
from ..layers.base import Array
from ..losses import binary_cross_entropy_with_logits, mean_squared_error, reduces, softmax_cross_entropy

__all__ = [
    "binary_log_loss",
    "half_squared_error",
    "log_loss",
    "loss_for_weights",
    "weighted_mean_squared_error",
    "weighted_softmax_cross_entropy",
]


def _row_scale(xp: Any, weights: Array) -> Array:
    """``w / sum(w)`` as a column ``(n, 1)``: each row's share of a weighted batch."""
    return (weights / xp.sum(weights))[:, None]


@reduces("mean")
def log_loss(Y: Array, T: Array, *, weights: Array | None = None) -> tuple[Array, Array]:
    """Multiclass log-loss of logits ``Y`` (n, k) against one-hot targets ``T`` (n, k), as scikit-learn's.

    ``-sum(T * log softmax(Y)) / n``, computed as ``(sum(log S) - sum(T * Z)) / n`` with
    ``Z = Y - max(Y)`` and ``S`` the rows' sums of ``exp(Z)`` (each row of T sums to 1);
    with ``weights`` (n,), the weighted mean of the rows' losses.
    """
    xp = namespace(Y)
    Z = Y - xp.max(Y, axis=1, keepdims=True)
    E = xp.exp(Z)
    S = xp.sum(E, axis=1, keepdims=True)
    if weights is None:
        n = Y.shape[0]
        return (xp.sum(xp.log(S)) - xp.sum(T * Z)) / n, (E / S - T) / n
    share = _row_scale(xp, weights)
    return xp.sum(share * (xp.log(S) - xp.sum(T * Z, axis=1, keepdims=True))), (E / S - T) * share


@reduces("mean")
def binary_log_loss(Y: Array, T: Array, *, weights: Array | None = None) -> tuple[Array, Array]:
    """Binary and multilabel log-loss of logits ``Y`` (n, k): summed over the k outputs, averaged over rows
    (with ``weights``, their weighted mean)."""
    k = Y.shape[1]
    if weights is None:
        value, dY = binary_cross_entropy_with_logits(Y, T)  # mean over n * k elements
        return value * k, dY * k
    xp = namespace(Y)
    share = _row_scale(xp, weights)
    L = xp.maximum(Y, 0.0) - Y * T + xp.log1p(xp.exp(-xp.abs(Y)))  # as binary_cross_entropy_with_logits
    return xp.sum(share * L), (sigmoid(Y, xp) - T) * share


@reduces("mean")
def half_squared_error(Y: Array, T: Array, *, weights: Array | None = None) -> tuple[Array, Array]:
    """scikit-learn's squared loss ``mean((Y - T)**2) / 2``; its gradient, as scikit-learn takes it, ``(Y - T) / n``.

    With ``weights``: ``sum_i w_i mean_k(D_ik**2) / (2 sum(w))`` and ``D w / sum(w)``.
    """
    D = Y - T
    xp = namespace(Y)
    if weights is None:
        return 0.5 * xp.mean(D * D), D / Y.shape[0]
    share = _row_scale(xp, weights)
    return (0.5 / Y.shape[1]) * xp.sum(share * (D * D)), D * share


@reduces("mean")
def weighted_softmax_cross_entropy(Y: Array, labels: Array, *, weights: Array | None = None) -> tuple[Array, Array]:
    """``pnn.losses.softmax_cross_entropy`` of logits (n, C) and class indices (n,) with sample ``weights``."""
    if weights is None:
        return softmax_cross_entropy(Y, labels)
    xp = namespace(Y)
    classes = xp.arange(Y.shape[1], dtype=labels.dtype, device=array_api_compat.device(Y))
    return log_loss(Y, xp.astype(labels[:, None] == classes[None, :], Y.dtype), weights=weights)


@reduces("mean")
def weighted_mean_squared_error(Y: Array, T: Array, *, weights: Array | None = None) -> tuple[Array, Array]:
    """``pnn.losses.mean_squared_error`` (the mean over all elements) of ``Y``, ``T`` (n, k) with sample ``weights``."""
    if weights is None:
        return mean_squared_error(Y, T)
    value, dY = half_squared_error(Y, T, weights=weights)
    return 2.0 * value, dY * (2.0 / Y.shape[1])


_WEIGHTED = {softmax_cross_entropy: weighted_softmax_cross_entropy, mean_squared_error: weighted_mean_squared_error}


def loss_for_weights(loss: Any, where: str) -> Any:
    """``loss`` to call as ``loss(Y, T, weights=W)``: its weighted equivalent for the built-in defaults,
    itself when it takes ``weights``.

    Raises:
        TypeError: the loss has no ``weights`` parameter (naming ``where``, the estimator).
    """
    known = next((w for plain, w in _WEIGHTED.items() if plain is loss), None)  # by identity: losses may be unhashable
    if known is not None:
        return known
    try:
        parameters = inspect.signature(loss).parameters.values()
    except (TypeError, ValueError):
        parameters = None
    if parameters is not None and any(p.name == "weights" or p.kind is p.VAR_KEYWORD for p in parameters):
        return loss
    name = getattr(loss, "__name__", type(loss).__name__)
    raise TypeError(
        f"{where}: sample_weight and class_weight need a loss that takes sample weights as "
        f"loss(Y, T, weights=W), W of shape (n,), and returns the weighted (value, dY); the loss {name} "
        "takes no weights. Add a weights=None keyword to it, or use the default loss."
    )
