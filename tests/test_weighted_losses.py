"""Sample weights in the built-in losses (``weights=``) and in ``fit(..., sample_weight=...)``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import portable_nn as pnn

L = pnn.losses


def _case(tb: Any, name: str, rng: np.random.Generator) -> tuple[Any, Any, Any]:
    """``(loss, Y, T)`` on the test backend: 2-D for every loss, and 3-D logits for the cross-entropy."""
    if name == "sce3":
        Y = tb.asarray(rng.standard_normal((4, 3, 5)), dtype=tb.float)
        return L.softmax_cross_entropy, Y, tb.be.asarray(rng.integers(0, 5, (4, 3)), dtype="int64")
    if name == "sce":
        Y = tb.asarray(rng.standard_normal((4, 5)), dtype=tb.float)
        return L.softmax_cross_entropy, Y, tb.be.asarray(rng.integers(0, 5, 4), dtype="int64")
    loss = {"sse": L.sum_squared_error, "mse": L.mean_squared_error,
            "bce": L.binary_cross_entropy_with_logits}[name]
    T = rng.random((4, 3)) if name == "bce" else rng.standard_normal((4, 3))
    return loss, tb.asarray(rng.standard_normal((4, 3)), dtype=tb.float), tb.asarray(T, dtype=tb.float)


def _np(a: Any) -> np.ndarray:
    return np.asarray(pnn.to_numpy(a), dtype=np.float64)


def _take(tb: Any, A: Any, rows: list[int]) -> Any:
    return tb.be.asarray(_np(A)[rows].astype(pnn.to_numpy(A).dtype))


@pytest.mark.parametrize("name", ["sse", "mse", "bce", "sce", "sce3"])
def test_integer_weights_are_copies_and_zero_weights_drop_rows(tb: Any, name: str) -> None:
    loss, Y, T = _case(tb, name, np.random.default_rng(0))
    tol = 1e-12 if tb.float == "float64" else 1e-5
    W = tb.asarray(np.array([2.0, 0.0, 1.0, 3.0]), dtype=tb.float)
    value, dY = loss(Y, T, weights=W)
    rows = [0, 0, 2, 3, 3, 3]  # each row as many times as its weight
    want, dY_rep = loss(_take(tb, Y, rows), _take(tb, T, rows))
    if loss.reduction == "mean":
        np.testing.assert_allclose(float(value), float(want), rtol=tol)
    else:
        np.testing.assert_allclose(float(value), float(want), rtol=tol)
    # the gradient of a copied row is the sum of its copies' gradients
    got, rep = _np(dY), _np(dY_rep)
    summed = np.stack([rep[[i for i, r in enumerate(rows) if r == k]].sum(axis=0) for k in range(4)])
    np.testing.assert_allclose(got, summed, rtol=tol, atol=tol)
    ones = tb.asarray(np.ones(4), dtype=tb.float)
    plain, dplain = loss(Y, T)
    np.testing.assert_allclose(float(loss(Y, T, weights=ones)[0]), float(plain), rtol=tol)
    np.testing.assert_allclose(_np(loss(Y, T, weights=ones)[1]), _np(dplain), rtol=tol, atol=tol)
    assert plain.dtype == value.dtype and dY.dtype == Y.dtype


def test_weights_must_match_the_rows_and_the_namespace(tb: Any) -> None:
    loss, Y, T = _case(tb, "mse", np.random.default_rng(1))
    with pytest.raises(ValueError, match=r"weights must have shape \(4,\)"):
        loss(Y, T, weights=tb.asarray(np.ones(3), dtype=tb.float))
    with pytest.raises(TypeError, match="weights"):  # integers (and, off NumPy, another library's array)
        loss(Y, T, weights=np.ones(4, dtype="int64"))


@pytest.mark.parametrize("name", ["mse", "bce", "sce", "sce3"])
def test_a_batch_whose_weights_are_all_zero_has_loss_zero_and_no_gradient(tb: Any, name: str) -> None:
    loss, Y, T = _case(tb, name, np.random.default_rng(3))
    value, dY = loss(Y, T, weights=tb.asarray(np.zeros(4), dtype=tb.float))
    assert float(value) == 0.0 and not np.any(_np(dY))


def test_fit_with_sample_weight_on_a_built_in_loss(tb: Any) -> None:
    """A weight of 0 removes the row from training: the params equal a fit without it (one full batch)."""
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((12, 3)), rng.integers(0, 3, 12)
    model = pnn.Sequential(pnn.Linear(3, 3))
    params = tb.init(model)
    w = np.ones(12)
    w[[1, 7]] = 0.0
    kw: dict[str, Any] = dict(loss=L.softmax_cross_entropy, optimizer=pnn.optim.SGD(0.5), epochs=3, progress=False,
                              shuffle=False)
    weighted, hist = pnn.fit(model, params, X, y, sample_weight=w, batch_size=12, **kw)
    keep = [i for i in range(12) if w[i] > 0]
    dropped, ref = pnn.fit(model, params, X[keep], y[keep], batch_size=10, **kw)
    tol = 1e-12 if tb.float == "float64" else 1e-5
    for a, b in zip(pnn.tree_leaves(weighted), pnn.tree_leaves(dropped), strict=True):
        np.testing.assert_allclose(_np(a), _np(b), rtol=tol, atol=tol)
    np.testing.assert_allclose(hist["loss"], ref["loss"], rtol=tol)
    with pytest.raises(ValueError, match=r"sample_weight must be >= 0"):
        pnn.fit(model, params, X, y, sample_weight=-w, batch_size=12, **kw)
