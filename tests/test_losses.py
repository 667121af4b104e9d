"""Losses on the backend under test (see conftest.py).

* dY agrees with finite differences of the value (hypothesis-drawn shapes and seeds);
* value (0-d) and dY keep Y's dtype, namespace and device, dY Y's shape;
* values and dY match NumPy references computed on the host;
* stable for logits of +-1e4 in float32;
* no loss writes into Y, T or the labels.

Only Array API operations are used on backend arrays; comparisons happen on
host copies made with ``pnn.to_numpy``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import portable_nn as pnn

from ._support import FAST, SHAPES, assert_same_kind, dtypes_under_test, host, seeds, sizes

L = pnn.losses
IDENTITY = pnn.Sequential()  # params [], apply returns X, backprop returns dY: checks dY directly


# ---------------------------------------------------------------- NumPy references (float64, on host)


def ref_sum_squared_error(Y: np.ndarray, T: np.ndarray) -> tuple[float, np.ndarray]:
    return float(np.sum((Y - T) ** 2)), 2.0 * (Y - T)


def ref_mean_squared_error(Y: np.ndarray, T: np.ndarray) -> tuple[float, np.ndarray]:
    return float(np.mean((Y - T) ** 2)), 2.0 * (Y - T) / Y.size


def ref_bce_with_logits(Y: np.ndarray, T: np.ndarray) -> tuple[float, np.ndarray]:
    # -T log(s) - (1 - T) log(1 - s), with log(s) = -logaddexp(0, -Y), log(1 - s) = -logaddexp(0, Y)
    losses = T * np.logaddexp(0.0, -Y) + (1.0 - T) * np.logaddexp(0.0, Y)
    sig = np.exp(-np.logaddexp(0.0, -Y))
    return float(np.mean(losses)), (sig - T) / Y.size


def ref_softmax_cross_entropy(Y: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    N, C = Y.shape
    Z = Y - Y.max(axis=1, keepdims=True)
    logp = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))  # log-sum-exp
    onehot = np.eye(C)[labels]
    return float(-logp[np.arange(N), labels].mean()), (np.exp(logp) - onehot) / N


# name -> (loss, reference, draws the target for logits Y)
TargetMaker = Callable[[np.random.Generator, tuple[int, int]], np.ndarray]
LOSSES: dict[str, tuple[Any, Any, TargetMaker]] = {
    "sum_squared_error": (L.sum_squared_error, ref_sum_squared_error, lambda r, s: r.standard_normal(s)),
    "mean_squared_error": (L.mean_squared_error, ref_mean_squared_error, lambda r, s: r.standard_normal(s)),
    "binary_cross_entropy_with_logits": (
        L.binary_cross_entropy_with_logits,
        ref_bce_with_logits,
        lambda r, s: np.where(r.random(s) < 0.3, r.integers(0, 2, s), r.random(s)),  # hard and soft targets
    ),
    "softmax_cross_entropy": (
        L.softmax_cross_entropy,
        ref_softmax_cross_entropy,
        lambda r, s: r.integers(0, s[1], s[0]),
    ),
}


def target(tb: Any, name: str, T_host: np.ndarray, dtype: str) -> Any:
    return tb.asarray(T_host, "int64" if name == "softmax_cross_entropy" else dtype)


# ---------------------------------------------------------------- 1. gradcheck of every loss


@pytest.mark.parametrize("name", list(LOSSES))
@FAST
@SHAPES
@given(n=sizes, f=sizes, o=sizes, seed=seeds, scale=st.sampled_from([0.5, 2.0, 6.0]))
def test_dY_matches_finite_differences(
    tb: Any, name: str, n: int, f: int, o: int, seed: int, scale: float
) -> None:
    loss, _, make_target = LOSSES[name]
    rng = np.random.default_rng(seed)
    Y = tb.asarray(scale * rng.standard_normal((n, f)), tb.float)
    T = target(tb, name, make_target(rng, (n, f)), tb.float)
    pnn.gradcheck(IDENTITY, [], Y, loss=loss, T=T, seed=seed)


@pytest.mark.parametrize("name", list(LOSSES))
@FAST
@SHAPES
@given(n=sizes, f=sizes, o=sizes, seed=seeds)
def test_loss_after_a_linear_layer_gradcheck(tb: Any, name: str, n: int, f: int, o: int, seed: int) -> None:
    # the loss's dY feeds a layer's backprop: the param gradients must still be right
    loss, _, make_target = LOSSES[name]
    rng = np.random.default_rng(seed)
    model = pnn.Linear(f, o)
    params = tb.init(model, seed=seed, dtype=tb.float)
    X = tb.asarray(rng.standard_normal((n, f)), tb.float)
    T = target(tb, name, make_target(rng, (n, o)), tb.float)
    pnn.gradcheck(model, params, X, loss=loss, T=T, seed=seed)


# ---------------------------------------------------------------- 4. values against NumPy


@pytest.mark.parametrize("name", list(LOSSES))
@FAST
@SHAPES
@given(n=sizes, f=sizes, o=sizes, seed=seeds, scale=st.sampled_from([1.0, 30.0, 1e3]), wide=st.booleans())
def test_value_and_dY_match_numpy(
    tb: Any, name: str, n: int, f: int, o: int, seed: int, scale: float, wide: bool
) -> None:
    loss, reference, make_target = LOSSES[name]
    rng = np.random.default_rng(seed)
    Y_host = scale * rng.standard_normal((n, f)) + rng.uniform(-scale, scale, (n, 1))
    T_host = make_target(rng, (n, f))
    # float32, or the widest float of the device (one per example: each dtype costs JAX compiles)
    dtype = tb.float if wide else "float32"
    Y, T = tb.asarray(Y_host, dtype), target(tb, name, T_host, dtype)
    value, dY = loss(Y, T)
    # the reference sees exactly the (rounded) numbers the backend saw
    T_ref = host(T) if name == "softmax_cross_entropy" else host(T).astype(np.float64)
    want_value, want_dY = reference(host(Y).astype(np.float64), T_ref)
    value_h, dY_h = float(host(value)), host(dY)
    assert np.isfinite(value_h) and np.all(np.isfinite(dY_h))
    # rounding of O(big) intermediates (Y - max(Y), Y * T) in the backend's dtype
    eps = float(np.finfo(dtype).eps)
    big = 1.0 + float(np.max(np.abs(host(Y))))
    rtol, atol_value, atol_dY = 100 * eps, 20 * eps * big, 20 * eps * big / n
    np.testing.assert_allclose(value_h, want_value, rtol=rtol, atol=atol_value, err_msg=f"{name} {dtype}")
    np.testing.assert_allclose(dY_h, want_dY, rtol=rtol, atol=atol_dY, err_msg=f"{name} {dtype} dY")


def test_softmax_cross_entropy_known_values(tb: Any) -> None:
    # uniform logits: loss log(C); a confident right answer: ~0; a confident wrong one: ~margin
    Y = tb.asarray(np.array([[0.0, 0.0, 0.0, 0.0], [50.0, 0.0, 0.0, 0.0], [0.0, 40.0, 0.0, 0.0]]), tb.float)
    labels = tb.asarray(np.array([2, 0, 0]), "int64")
    value, dY = L.softmax_cross_entropy(Y, labels)
    np.testing.assert_allclose(float(host(value)), (np.log(4.0) + 0.0 + 40.0) / 3, rtol=1e-6)
    np.testing.assert_allclose(host(dY).sum(axis=1), 0.0, atol=1e-7)  # softmax and one-hot both sum to 1


@pytest.mark.filterwarnings("error")  # e.g. NumPy's "overflow in exp"
def test_binary_cross_entropy_and_softmax_ce_finite_for_huge_logits_float32(tb: Any) -> None:
    logits = np.array([[1e4, -1e4], [-1e4, 1e4], [1e4, 1e4], [-1e4, 0.0]])
    Y = tb.asarray(logits, "float32")
    T = tb.asarray(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]), "float32")
    value, dY = L.binary_cross_entropy_with_logits(Y, T)
    assert value.dtype == Y.dtype and dY.dtype == Y.dtype
    want_value, want_dY = ref_bce_with_logits(logits, host(T).astype(np.float64))
    assert np.isfinite(float(host(value))) and np.all(np.isfinite(host(dY)))
    np.testing.assert_allclose(float(host(value)), want_value, rtol=1e-6)  # (3.5e4 + log 2) / 8
    np.testing.assert_allclose(host(dY), want_dY, atol=1e-7)

    labels = tb.asarray(np.array([0, 0, 1, 1]), "int64")
    value, dY = L.softmax_cross_entropy(Y, labels)
    want_value, want_dY = ref_softmax_cross_entropy(logits, np.array([0, 0, 1, 1]))
    assert np.isfinite(float(host(value))) and np.all(np.isfinite(host(dY)))
    np.testing.assert_allclose(float(host(value)), want_value, rtol=1e-6)
    np.testing.assert_allclose(host(dY), want_dY, atol=1e-7)


# ---------------------------------------------------------------- 3. dtype / namespace / device


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_keeps_dtype_namespace_device_and_shapes(tb: Any, name: str) -> None:
    loss, _, make_target = LOSSES[name]
    rng = np.random.default_rng(0)
    for dtype in dtypes_under_test(tb):
        Y = tb.asarray(rng.standard_normal((5, 3)), dtype)
        assert Y.dtype == tb.be.dtype(dtype)
        T = target(tb, name, make_target(rng, (5, 3)), dtype)
        value, dY = loss(Y, T)
        assert value.ndim == 0 and tuple(value.shape) == (), f"{name}: value has shape {value.shape}"
        assert_same_kind(value, Y, f"{name} {dtype} value")
        assert tuple(dY.shape) == (5, 3)
        assert_same_kind(dY, Y, f"{name} {dtype} dY")


# ---------------------------------------------------------------- 6. no writes into the inputs


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_does_not_write_into_its_inputs(tb: Any, name: str) -> None:
    loss, _, make_target = LOSSES[name]
    rng = np.random.default_rng(1)
    Y = tb.asarray(rng.standard_normal((4, 3)), tb.float)
    T = target(tb, name, make_target(rng, (4, 3)), tb.float)
    if tb.readonly:  # the harness really hands the loss read-only arrays
        assert not Y.flags.writeable and not T.flags.writeable
    Y_before, T_before = host(Y), host(T)
    value, dY = loss(Y, T)
    assert np.isfinite(float(host(value))) and np.all(np.isfinite(host(dY)))
    np.testing.assert_array_equal(host(Y), Y_before)
    np.testing.assert_array_equal(host(T), T_before)
