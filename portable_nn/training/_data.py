"""Moving user data onto the params' backend for fit, predict and evaluate, with checks; batching."""

from __future__ import annotations

import warnings
from typing import Any

import array_api_compat
import numpy as np

from .._check import dtype_name, is_float
from .._rng import host_rng
from .._tree import tree_leaves
from ..backends import namespace, to_numpy
from ..layers.base import Array, Layer, Params, apply_model, has_state, takes_indices
from ._source import MemorySource

__all__ = [
    "prepare",
    "prepare_validation",
    "probe",
    "as_data",
    "as_weights",
    "check_finite",
    "check_index_range",
    "check_one_row_batch",
    "check_labels",
    "IDS_HINT",
    "check_targets",
    "label_count",
    "params_backend",
]


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


IDS_HINT = (
    " If it holds integer ids for a layer that takes them (an embedding inside a layer of your own), the model"
    " must say so: that layer, the model's first, overrides the property Layer.takes_indices to return True"
    " (Sequential answers for its first layer)."
)
"""Added where integer X is refused for a model that does not declare ``takes_indices``."""


def as_data(
    where: str, name: str, A: Any, xp: Any, device: Any, dtype: Any, *, labels_ok: bool, indices: bool = False
) -> Any:
    """Return ``A`` as an array of ``xp`` on ``device``.

    Host data (NumPy arrays, lists) is copied over; floating data is cast to
    the params' ``dtype``. Integer data is kept only where labels are allowed
    (``labels_ok``), and is required where the model takes integer indices
    (``indices``: token ids for an embedding, never cast to float). Arrays of
    another library or device raise: they are never converted silently.
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
    if indices and not kind_int:
        raise TypeError(
            f"{where}: {name} has dtype {A.dtype}, but the model takes integer indices (it starts with an "
            f"embedding). Pass integer ids, e.g. be.asarray({name}, dtype='int64'), not floats."
        )
    if kind_float:
        source = A
        with warnings.catch_warnings():  # an overflow is reported below, naming the row
            warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning)
            if is_host:
                A = A.astype(dtype_name(dtype), copy=False)
            elif A.dtype != dtype:
                A = xp.astype(A, dtype)
        if A is not source and _narrower(source.dtype, dtype):
            _check_no_overflow(where, name, source, A, np if is_host else xp, dtype)
    elif not ((labels_ok or indices) and kind_int):
        want = "float or integer labels" if labels_ok else "floating"
        raise TypeError(
            f"{where}: {name} has dtype {A.dtype}; {want} data is needed. "
            f"Convert it explicitly, e.g. be.asarray({name}, dtype='{dtype_name(dtype)}').{IDS_HINT if kind_int else ''}"
        )
    if is_host:
        A = xp.asarray(A, device=device) if xp is not np else A
    if A.ndim == 0:
        raise ValueError(f"{where}: {name} must have a batch axis, got a 0-d array.")
    return A


def _narrower(src: Any, dst: Any) -> bool:
    """True when casting dtype ``src`` to ``dst`` can overflow (a float with fewer bits)."""
    bits = {"float16": 16, "float32": 32, "float64": 64}
    return bits.get(dtype_name(src), 64) > bits.get(dtype_name(dst), 64)


def _check_no_overflow(where: str, name: str, source: Any, cast: Any, xp: Any, dtype: Any) -> None:
    """Raise ValueError when casting ``source`` to ``dtype`` turned finite values into inf."""
    overflowed = xp.logical_and(xp.isfinite(source), xp.logical_not(xp.isfinite(cast)))
    if not bool(xp.any(overflowed)):
        return
    host = to_numpy(source).reshape(source.shape[0], -1) if source.ndim else to_numpy(source).reshape(1, 1)
    bad = to_numpy(overflowed).reshape(host.shape)
    row = int(np.flatnonzero(bad.any(axis=1))[0])
    value = float(host[row][bad[row]][0])
    limit = float(np.finfo(dtype_name(dtype)).max)
    raise ValueError(
        f"{where}: {name} has values that overflow the params' dtype {dtype_name(dtype)} "
        f"(first at row {row}: {value:.6g}; {dtype_name(dtype)} holds magnitudes up to {limit:.4g}). "
        "Scale the data (e.g. standardize it), or init the model with dtype='float64'."
    )


def check_labels(where: str, name: str, Y: Any, n_classes: int, xp: Any) -> None:
    """Raise ValueError when integer labels ``Y`` fall outside ``[0, n_classes)`` (one host read)."""
    if xp.isdtype(Y.dtype, "integral") and Y.shape[0] > 0:
        lo, hi = int(xp.min(Y)), int(xp.max(Y))
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"{where}: {name}: labels must be in [0, {n_classes}) for {n_classes} classes, got values "
                f"in [{lo}, {hi}]. Check the number of output units or re-encode the labels."
            )


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


def check_index_range(where: str, name: str, model: Layer, params: Params, X: Array, xp: Any,
                      first_row: int = 0) -> None:
    """Raise ValueError when the integer ids ``X`` (of a model that takes indices) hold one the model cannot take.

    The range of valid ids is the model's business (an :class:`~portable_nn.Embedding` knows its
    vocabulary), so the model runs (inference) on the first row with its first id replaced by X's smallest,
    then by its largest id: two host reads and two one-row passes, once, before any step. Without it an
    id out of range in a later row failed in the middle of training, or not at all where the step is
    traced (``jax.jit``: the layer cannot read ids there, and ``take`` fills NaN, reported as a diverging
    loss). ``first_row``: the row number of ``X``'s first row in the data (a Dask block's offset).
    """
    n = int(X.shape[0])
    if n == 0 or label_count(X) == 0:
        return
    lo, hi = int(xp.min(X)), int(xp.max(X))
    row = np.array(to_numpy(X[:1, ...]), copy=True)
    device = array_api_compat.device(X)
    for value in dict.fromkeys((lo, hi)):
        one = row.copy()
        one.reshape(-1)[0] = value  # a view of the contiguous copy
        try:
            model(params, one if xp is np else xp.asarray(one, device=device))
        except ValueError as e:
            rows = xp.any(xp.reshape(X == value, (n, -1)), axis=1)
            at = first_row + int(xp.argmax(xp.astype(rows, xp.int8)))
            raise ValueError(
                f"{where}: {name} holds ids in [{lo}, {hi}], and row {at} holds {value}, which the model cannot "
                f"take: {e}"
            ) from None


def check_targets(where: str, name: str, Y: Array, Y_pred: Array, xp: Any) -> bool:
    """Integer labels ``Y`` of a ``(batch, classes)`` output (or ``(batch, ..., classes)`` with labels
    ``(batch, ...)``): check their range. True when they are such labels."""
    if not xp.isdtype(Y.dtype, "integral") or Y_pred.ndim != Y.ndim + 1:
        return False
    check_labels(where, name, Y, int(Y_pred.shape[-1]), xp)
    return True


def label_count(Y: Array) -> int:
    """How many labels ``Y`` holds (rows times the labels in a row): accuracy's denominator."""
    count = 1
    for s in Y.shape:
        count *= int(s)
    return count


def check_one_row_batch(where: str, model: Layer, params: Params, X1: Array, n: int, batch_size: int | None) -> None:
    """Raise ValueError before any step when a batch of fit would have 1 row and the model cannot train on
    one (BatchNorm's batch statistics): found by a training forward pass on the row ``X1``."""
    if batch_size is None or not has_state(model):
        return
    smallest = n - (-(-n // batch_size) - 1) * batch_size  # the epoch's last batch
    if smallest != 1:
        return
    try:
        apply_model(model, params, X1, train=True, rng=host_rng(0))
    except ValueError as e:
        which = "every batch" if n == 1 or batch_size == 1 else "the epoch's last batch"
        fix = (
            "Train on at least 2 rows." if n == 1 else
            "Use batch_size >= 2." if batch_size == 1 else
            f"Choose a batch_size that leaves at least 2 rows in the last batch (n % batch_size != 1, "
            f"e.g. {' or '.join(map(str, _batch_sizes_for(n, batch_size)))}), or drop a row."
        )
        raise ValueError(
            f"{where}: with {n} row{'' if n == 1 else 's'} and batch_size={batch_size}, {which} has 1 row, and {model!r} cannot "
            f"train on one: {e} {fix}"
        ) from None


def _batch_sizes_for(n: int, batch_size: int) -> list[int]:
    """The batch sizes nearest ``batch_size`` (one below, one above) whose batches all have >= 2 of ``n >= 2``
    rows: the last batch holds ``n % b`` rows (``b`` when 0), so ``b >= 2`` and ``n % b != 1``."""
    def works(b: int) -> bool:
        return b >= 2 and n % b != 1

    below = next((b for b in range(batch_size - 1, 1, -1) if works(b)), None)
    above = next((b for b in range(batch_size + 1, n + 1) if works(b)), None)  # b = n works: all rows at once
    return [b for b in (below, above) if b is not None]


def probe(where: str, model: Layer, params: Params, X: Array, Y: Array, loss: Any, n: int,
          names: tuple[str, str] = ("X", "Y")) -> Array:
    """Run the model on the first row of ``X`` and the loss on its output against ``Y``'s, so that data the
    model or the loss cannot take fails before any training; returns the model's output for that row.

    Errors name the caller's arguments and the data's full shapes (``n`` rows): the model's output as the
    model's output and ``X``, ``Y`` as the user's arguments, then the layer's or the loss's own message,
    where the one-row shapes are written as the data's.
    """
    nx, ny = names
    X1, Y1 = X[:1, ...], Y[:1, ...]
    try:
        out = model(params, X1)
    except (TypeError, ValueError) as e:
        said = _as_data_shapes(str(e), [(X1, _shape(n, X))])
        raise type(e)(f"{where}: the model cannot take {nx} (shape {_shape(n, X)}, dtype {X.dtype}): {said}") from None
    try:
        loss(out, Y1)
    except (TypeError, ValueError) as e:
        name = getattr(loss, "__name__", type(loss).__name__)
        said = _as_data_shapes(str(e), [(out, _shape(n, out)), (Y1, _shape(n, Y))])
        raise type(e)(
            f"{where}: {ny} (shape {_shape(n, Y)}, dtype {Y.dtype}) does not fit the model's output (shape "
            f"{_shape(n, out)}, dtype {out.dtype}) under the loss {name}. Check the model's output units "
            f"against the targets (integer class labels (n,) for softmax_cross_entropy, floats shaped like "
            f"the output for the others). The loss's own words, where its first argument is the model's "
            f"output and its second is {ny}: {said}"
        ) from None
    return out


def _as_data_shapes(message: str, rows: list[tuple[Any, tuple[int, ...]]]) -> str:
    """``message`` about one-row arrays with each one's shape written as its whole data's (``(1, 4)`` -> ``(10, 4)``)."""
    for A, full in rows:
        one = str(tuple(int(s) for s in A.shape))
        if one != str(full):
            message = message.replace(one, str(full))
    return message


def _shape(n: int, A: Any) -> tuple[int, ...]:
    return (n, *(int(s) for s in A.shape[1:]))


def as_weights(where: str, W: Any, n: int, xp: Any, device: Any, dtype: Any) -> Array:
    """Sample weights ``W``: ``n`` finite numbers >= 0, not all 0, as a ``(n,)`` array of the params' dtype."""
    W = as_data(where, "sample_weight", W, xp, device, dtype, labels_ok=True)
    if W.ndim != 1 or W.shape[0] != n:
        raise ValueError(f"{where}: sample_weight must have shape ({n},), one weight per row, got {tuple(W.shape)}.")
    if not is_float(xp, W.dtype):
        W = xp.astype(W, dtype)
    check_finite(where, "sample_weight", W, xp)
    if bool(xp.any(W < 0)) or not bool(xp.any(W > 0)):
        raise ValueError(
            f"{where}: sample_weight must be >= 0 with at least one weight > 0, got values in "
            f"[{float(xp.min(W))}, {float(xp.max(W))}]."
        )
    return W


def _check_weighted_loss(loss: Any, Y_pred: Array, T: Array, W: Array) -> None:
    """Raise TypeError before any step when ``loss`` cannot take the ``weights=`` that sample weights need."""
    try:
        loss(Y_pred, T, weights=W)
    except TypeError as e:
        if "weights" not in str(e):
            raise
        name = getattr(loss, "__name__", type(loss).__name__)
        raise TypeError(
            f"fit: sample_weight needs a loss that takes a weights= keyword, and {name} does not ({e}). Pass "
            "a loss f(Y, T, weights=None) -> (value, dY) whose value with weights w of shape (batch,) is "
            "sum(w_i l_i) / sum(w_i) for a 'mean' loss, or drop sample_weight."
        ) from None


def prepare(
    model: Layer, params: Params, X: Any, Y: Any, loss: Any, batch_size: int | None = None,
    sample_weight: Any = None,
) -> MemorySource:
    """Move and check the training data, and run the model and the loss on its first rows (:func:`probe`), so
    that bad data or labels (or a 1-row batch a stateful model cannot train on, given ``batch_size``)
    fail here, with fit's names, before any training."""
    where = "fit"
    xp, device, dtype = params_backend(params, where)
    X = as_data(where, "X", X, xp, device, dtype, labels_ok=False, indices=takes_indices(model))
    Y = as_data(where, "Y", Y, xp, device, dtype, labels_ok=True)
    n = X.shape[0]
    if Y.shape[0] != n:
        raise ValueError(f"fit: X has {n} rows but Y has {Y.shape[0]}; they must have the same length.")
    if n == 0:
        raise ValueError("fit: X is empty (0 rows).")
    check_finite(where, "X", X, xp)
    check_finite(where, "Y", Y, xp)
    W = None if sample_weight is None else as_weights(where, sample_weight, n, xp, device, dtype)
    Yp = probe(where, model, params, X, Y, loss, n)
    if takes_indices(model):
        check_index_range(where, "X", model, params, X, xp)
    if W is not None:
        _check_weighted_loss(loss, Yp, Y[:1, ...], xp.ones_like(W[:1]))  # (the first row's weight may be 0)
    counts_correct = check_targets(where, "Y", Y, Yp, xp)
    check_one_row_batch(where, model, params, X[:1, ...], n, batch_size)
    return MemorySource(X, Y, W, counts_correct, label_count(Y))


def prepare_validation(model: Layer, params: Params, validation_data: Any, like: MemorySource) -> tuple[Array, Array]:
    """Move and check ``validation_data`` (a pair ``(X_val, Y_val)``) like the training data ``like``."""
    where = "fit"
    xp, device, dtype = params_backend(params, where)
    if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
        raise TypeError("fit: validation_data must be a pair (X_val, Y_val).")
    Xv = as_data(where, "X_val", validation_data[0], xp, device, dtype, labels_ok=False, indices=takes_indices(model))
    Yv = as_data(where, "Y_val", validation_data[1], xp, device, dtype, labels_ok=True)
    if Xv.shape[0] != Yv.shape[0]:
        raise ValueError(f"fit: X_val has {Xv.shape[0]} rows but Y_val has {Yv.shape[0]}.")
    if Xv.shape[0] == 0:
        raise ValueError("fit: X_val is empty (0 rows); pass validation data with rows, or none.")
    for name, A, ref in (("X_val", Xv, like.X), ("Y_val", Yv, like.Y)):
        if tuple(A.shape[1:]) != tuple(ref.shape[1:]) or A.dtype != ref.dtype:
            what = name.partition("_")[0]
            raise ValueError(
                f"fit: {name} has shape {tuple(A.shape)} and dtype {A.dtype} but {what} has "
                f"{tuple(ref.shape)} and {ref.dtype}; each row must look like a row of {what}."
            )
    check_finite(where, "X_val", Xv, xp)
    check_finite(where, "Y_val", Yv, xp)
    if takes_indices(model):
        check_index_range(where, "X_val", model, params, Xv, xp)
    if like.counts_correct:
        check_labels(where, "Y_val", Yv, int(model(params, like.X[:1, ...]).shape[-1]), xp)
    return Xv, Yv
