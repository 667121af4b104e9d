"""predict and evaluate: a model in inference mode over a data set, in batches."""

from __future__ import annotations

from typing import Any

from .._check import check_int
from ..layers.base import Array, Layer, Params, takes_indices
from ..losses import reduction_of
from ._dask_data import evaluate_dask, is_dask, predict_dask
from ._data import as_data, check_targets, label_count, params_backend
from ._precision import check_precision, infer
from ._source import batch_slices
from ._step import n_correct

__all__ = ["evaluate", "predict"]


def evaluate(
    model: Layer, params: Params, X: Any, Y: Any, *, loss: Any, batch_size: int = 1024, precision: str | None = None,
) -> tuple[float, float | None]:
    """The loss and accuracy of ``model`` over a data set, in inference mode.

    Args:
        params: the model's params, or its ``Variables`` (a model with BatchNorm: running statistics used).
        X: ``(n, ...)`` float inputs. Y: targets ``(n, ...)``, or integer labels ``(n,)``.
        loss: as in :func:`fit`. A ``"mean"`` loss (see ``pnn.losses``) gives the
            mean over all rows, a ``"sum"`` loss the sum over all rows: the same
            value whatever ``batch_size``.
        precision: ``None``, ``"bfloat16"`` or ``"float16"``: run the model in
            that dtype (as :func:`fit` trains with it); the loss is computed in
            the params' dtype.

    Returns:
        ``(loss, accuracy)`` as Python floats; accuracy is None unless Y holds integer labels.

    Raises:
        ValueError: X empty, X and Y of different lengths, ``batch_size`` < 1, labels out of range, a
            precision the params' backend lacks.
        TypeError: X or Y of another array library than the params.
    """
    where = "evaluate"
    batch_size = check_int(where, "batch_size", batch_size, 1)
    precision = check_precision(where, precision, params)
    reduction = reduction_of(loss)
    if is_dask(X, Y):  # streamed block by block
        return evaluate_dask(where, model, params, X, Y, loss, reduction, batch_size, precision)
    xp, device, dtype = params_backend(params, where)
    X = as_data(where, "X", X, xp, device, dtype, labels_ok=False, indices=takes_indices(model))
    Y = as_data(where, "Y", Y, xp, device, dtype, labels_ok=True)
    total, correct, n, has_acc = 0.0, 0, X.shape[0], False
    if Y.shape[0] != n:
        raise ValueError(f"evaluate: X has {n} rows but Y has {Y.shape[0]}; they must have the same length.")
    if n == 0:
        raise ValueError("evaluate: X is empty (0 rows).")
    for i, idx in enumerate(batch_slices(n, batch_size, None)):
        Yp = infer(model, params, X[idx, ...], precision)
        if i == 0:
            check_targets(where, "Y", Y, Yp, xp)
        value = float(loss(Yp, Y[idx, ...])[0])
        total += value if reduction == "sum" else value * (idx.stop - idx.start)
        c = n_correct(xp, Yp, Y[idx, ...])
        correct = correct + (0 if c is None else int(c))
        has_acc = c is not None
    return (total if reduction == "sum" else total / n), (correct / label_count(Y) if has_acc else None)


def predict(
    model: Layer, params: Params, X: Any, *, batch_size: int = 1024, precision: str | None = None
) -> Array:
    """Run ``model`` in inference mode over ``X`` in batches.

    Args:
        params: the model's params, or its ``Variables`` (a model with BatchNorm: running statistics used).
        X: ``(n, ...)`` float inputs; host data is copied to the params' device; a Dask
            array is read block by block (the outputs are concatenated in memory).
        batch_size: rows per forward pass (>= 1).
        precision: ``None``, ``"bfloat16"`` or ``"float16"``: run the model in
            that dtype (as :func:`fit` trains with it); Y comes back in the
            params' dtype.

    Returns:
        ``Y`` of shape ``(n, ...)``, on the params' backend and device, in the params' dtype.

    Raises:
        ValueError: X empty, ``batch_size`` < 1, X on another device, X not fitting the model, a precision
            the params' backend lacks.
        TypeError: X of another array library than the params, or not numeric.

    >>> import numpy as np, portable_nn as pnn
    >>> model = pnn.Sequential(pnn.Linear(3, 2), pnn.Softmax())
    >>> Y = pnn.predict(model, model.init(seed=0, backend="array_api_strict"), np.ones((10, 3)), batch_size=4)
    >>> tuple(Y.shape), pnn.to_numpy(Y).dtype
    ((10, 2), dtype('float32'))
    """
    where = "predict"
    batch_size = check_int(where, "batch_size", batch_size, 1)
    precision = check_precision(where, precision, params)
    if is_dask(X):  # streamed block by block
        return predict_dask(model, params, X, batch_size, precision)
    xp, device, dtype = params_backend(params, where)
    X = as_data(where, "X", X, xp, device, dtype, labels_ok=False, indices=takes_indices(model))
    outs = [infer(model, params, X[idx, ...], precision) for idx in batch_slices(X.shape[0], batch_size, None)]
    if not outs:
        raise ValueError("predict: X is empty (0 rows).")
    return outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)
