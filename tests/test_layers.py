"""Layers on the backend under test (see conftest.py).

* backprop agrees with finite differences for every layer (hypothesis-drawn shapes and seeds);
* gradcheck itself fails on a layer with a wrong gradient;
* outputs, grads and dX keep the inputs' dtype, namespace, device and shapes;
* layer semantics (ReLU's rule at 0, stable Softmax/Sigmoid, Dropout, LayerNorm, Linear);
* one seed gives bit-identical initial weights on every backend;
* nothing writes into its inputs (under ``numpy-readonly`` every input is read-only).

Only Array API operations are used on backend arrays; comparisons happen on
host copies made with ``pnn.to_numpy``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np
import pytest
from hypothesis import given

import portable_nn as pnn

from ._support import FAST, SHAPES, assert_same_kind, dtypes_under_test, host, seeds, sizes

# ---------------------------------------------------------------- helpers


def away_from_kink(X: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """Move values away from 0 by ``margin`` (larger than gradcheck's float32 eps of 1e-2)."""
    return np.where(X >= 0, X + margin, X - margin)


def spread_rows(rng: np.random.Generator, n: int, f: int) -> np.ndarray:
    """Rows whose values are well apart, so LayerNorm's variance is never tiny."""
    rows = np.stack([rng.permutation(np.linspace(-2.0, 2.0, f)) for _ in range(n)])
    return rows + 0.05 * rng.standard_normal((n, f)) + rng.standard_normal((n, 1))


def leaves_by_path(tree: Any) -> dict[str, Any]:
    return dict(pnn.tree_paths(tree))


# ---------------------------------------------------------------- 1. gradcheck of every layer

Builder = Callable[[Any, np.random.Generator, int, int, int, str], tuple[pnn.Layer, Any, np.ndarray]]


def _linear(bias: bool) -> Builder:
    def build(tb: Any, rng: np.random.Generator, n: int, f: int, o: int, dtype: str) -> Any:
        model = pnn.Linear(f, o, bias=bias)
        params = tb.init(model, seed=int(rng.integers(2**31)), dtype=dtype)
        if bias:  # a random bias, so using it wrongly in backprop shows
            params = {"W": params["W"], "b": tb.asarray(rng.standard_normal(o), dtype)}
        return model, params, rng.standard_normal((n, f))

    return build


def _elementwise(make: Callable[[], pnn.Layer], kink: bool = False, scale: float = 1.5) -> Builder:
    def build(tb: Any, rng: np.random.Generator, n: int, f: int, o: int, dtype: str) -> Any:
        model = make()
        X = scale * rng.standard_normal((n, f))
        return model, tb.init(model, dtype=dtype), away_from_kink(X) if kink else X

    return build


def _layernorm(tb: Any, rng: np.random.Generator, n: int, f: int, o: int, dtype: str) -> Any:
    model = pnn.LayerNorm(f)
    params = {  # not the ones/zeros of init, so a gamma missing from backprop shows
        "gamma": tb.asarray(rng.uniform(0.5, 2.0, f), dtype),
        "beta": tb.asarray(rng.standard_normal(f), dtype),
    }
    return model, params, spread_rows(rng, n, f)


def _sequential(tb: Any, rng: np.random.Generator, n: int, f: int, o: int, dtype: str) -> Any:
    # LayerNorm first, on rows kept well spread: downstream of a Linear its input
    # row could be nearly constant, which float32 finite differences cannot follow.
    model = pnn.Sequential(
        pnn.LayerNorm(f),
        pnn.Linear(f, 4),
        pnn.Tanh(),
        pnn.Dropout(0.25),
        pnn.Sequential(pnn.Linear(4, 4, bias=False), pnn.Sigmoid()),
        pnn.Linear(4, 4),
        pnn.GELU(),
        pnn.Linear(4, o),
        pnn.Softmax(),
    )
    params = tb.init(model, seed=int(rng.integers(2**31)), dtype=dtype)
    params[0] = {
        "gamma": tb.asarray(rng.uniform(0.5, 2.0, f), dtype),
        "beta": tb.asarray(rng.standard_normal(f), dtype),
    }
    return model, params, spread_rows(rng, n, f)


def _sequential_relu(make_first: Callable[[], pnn.Layer]) -> Builder:
    # (Leaky)ReLU first, on inputs kept away from its kink
    def build(tb: Any, rng: np.random.Generator, n: int, f: int, o: int, dtype: str) -> Any:
        model = pnn.Sequential(make_first(), pnn.Linear(f, o), pnn.Dropout(0.5), pnn.Tanh())
        params = tb.init(model, seed=int(rng.integers(2**31)), dtype=dtype)
        return model, params, away_from_kink(rng.standard_normal((n, f)))

    return build


GRAD_CASES: dict[str, Builder] = {
    "Linear": _linear(bias=True),
    "Linear(bias=False)": _linear(bias=False),
    "ReLU": _elementwise(pnn.ReLU, kink=True),
    "LeakyReLU": _elementwise(lambda: pnn.LeakyReLU(0.2), kink=True),
    "Sigmoid": _elementwise(pnn.Sigmoid, scale=3.0),
    "Tanh": _elementwise(pnn.Tanh),
    "GELU": _elementwise(pnn.GELU, scale=2.0),
    "Softmax": _elementwise(pnn.Softmax, scale=2.0),
    "Softmax(axis=0)": _elementwise(lambda: pnn.Softmax(axis=0), scale=2.0),
    "Dropout(0.5)": _elementwise(lambda: pnn.Dropout(0.5)),
    "Dropout(0.8)": _elementwise(lambda: pnn.Dropout(0.8)),
    "LayerNorm": _layernorm,
    "Sequential": _sequential,
    "Sequential(ReLU, ...)": _sequential_relu(pnn.ReLU),
    "Sequential(LeakyReLU, ...)": _sequential_relu(lambda: pnn.LeakyReLU(0.2)),
}


@pytest.mark.parametrize("case", list(GRAD_CASES))
@FAST
@SHAPES
@given(n=sizes, f=sizes, o=sizes, seed=seeds)
def test_backprop_matches_finite_differences(tb: Any, case: str, n: int, f: int, o: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model, params, X_host = GRAD_CASES[case](tb, rng, n, f, o, tb.float)
    X = tb.asarray(X_host, tb.float)
    Y = model(params, X, train=True, rng=seed)
    T = tb.asarray(rng.standard_normal(tuple(Y.shape)), tb.float)
    # raises GradientCheckError (an AssertionError) naming the layer, param and element
    pnn.gradcheck(model, params, X, loss=pnn.losses.sum_squared_error, T=T, seed=seed)


# ---------------------------------------------------------------- 2. gradcheck can fail


class Scale(pnn.Layer):
    """``Y = X * w`` per feature. ``wrong`` = "w" or "X" doubles that gradient on purpose."""

    def __init__(self, features: int, wrong: str | None = None) -> None:
        self.features = features
        self.wrong = wrong

    def __repr__(self) -> str:
        return f"Scale({self.features}, wrong={self.wrong!r})"

    def init_params(self, rng: np.random.Generator, be: pnn.Backend, dtype: str) -> Any:
        return {"w": be.asarray(rng.uniform(0.5, 1.5, self.features).astype(dtype))}

    def apply(self, params: Any, X: Any, *, train: bool = False, rng: Any = None) -> Any:
        w = params["w"]
        xp = pnn.namespace(X, w)
        Y = X * w

        def backprop(dY: Any) -> Any:
            dX, dw = dY * w, xp.sum(dY * X, axis=0)
            if self.wrong == "w":
                dw = 2.0 * dw
            if self.wrong == "X":
                dX = 2.0 * dX
            return dX, {"w": dw}

        return Y, backprop


def _scale_inputs(tb: Any, model: pnn.Layer) -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(7)
    params = tb.init(model, seed=3)
    X = tb.asarray(rng.standard_normal((4, 3)), tb.float)
    T = tb.asarray(rng.standard_normal((4, 3)), tb.float)
    return params, X, T


def test_gradcheck_passes_a_correct_custom_layer(tb: Any) -> None:
    # the control for the negative tests below: the same layer, right gradients
    for model in (Scale(3), pnn.Sequential(pnn.Tanh(), Scale(3))):
        params, X, T = _scale_inputs(tb, model)
        pnn.gradcheck(model, params, X, loss=pnn.losses.sum_squared_error, T=T)


def test_gradcheck_catches_a_doubled_param_gradient(tb: Any) -> None:
    model = Scale(3, wrong="w")
    params, X, T = _scale_inputs(tb, model)
    with pytest.raises(pnn.GradientCheckError, match=re.escape("Scale(3, wrong='w'), param 'w'")):
        pnn.gradcheck(model, params, X, loss=pnn.losses.sum_squared_error, T=T)


def test_gradcheck_names_the_layer_inside_a_sequential(tb: Any) -> None:
    model = pnn.Sequential(pnn.Tanh(), Scale(3, wrong="w"), pnn.Sigmoid())
    params, X, T = _scale_inputs(tb, model)
    with pytest.raises(pnn.GradientCheckError) as info:
        pnn.gradcheck(model, params, X, loss=pnn.losses.sum_squared_error, T=T)
    assert "layer 1 (Scale(3, wrong='w')), param 'w'" in str(info.value)
    assert isinstance(info.value, AssertionError)


def test_gradcheck_catches_a_doubled_input_gradient(tb: Any) -> None:
    model = Scale(3, wrong="X")
    params, X, T = _scale_inputs(tb, model)
    with pytest.raises(pnn.GradientCheckError, match="input X"):
        pnn.gradcheck(model, params, X, loss=pnn.losses.sum_squared_error, T=T)


# ---------------------------------------------------- 3 and 6. dtype / namespace / device, no writes

# name -> (layer factory, X shape, Y shape)
LAYER_CASES: dict[str, tuple[Callable[[], pnn.Layer], tuple[int, ...], tuple[int, ...]]] = {
    "Linear": (lambda: pnn.Linear(4, 3), (5, 4), (5, 3)),
    "Linear(bias=False)": (lambda: pnn.Linear(4, 3, bias=False), (5, 4), (5, 3)),
    "ReLU": (pnn.ReLU, (2, 3, 4), (2, 3, 4)),
    "LeakyReLU": (pnn.LeakyReLU, (2, 3, 4), (2, 3, 4)),
    "Sigmoid": (pnn.Sigmoid, (2, 3, 4), (2, 3, 4)),
    "Tanh": (pnn.Tanh, (2, 3, 4), (2, 3, 4)),
    "GELU": (pnn.GELU, (2, 3, 4), (2, 3, 4)),
    "Softmax": (pnn.Softmax, (2, 3, 4), (2, 3, 4)),
    "Softmax(axis=0)": (lambda: pnn.Softmax(axis=0), (5, 4), (5, 4)),
    "Dropout": (lambda: pnn.Dropout(0.5), (2, 3, 4), (2, 3, 4)),
    "LayerNorm": (lambda: pnn.LayerNorm(4), (5, 4), (5, 4)),
    "LayerNorm-3d": (lambda: pnn.LayerNorm(4), (2, 3, 4), (2, 3, 4)),
    "LayerNorm-1d": (lambda: pnn.LayerNorm(4), (4,), (4,)),
    "Sequential": (
        lambda: pnn.Sequential(
            pnn.Linear(4, 6),
            pnn.ReLU(),
            pnn.LayerNorm(6),
            pnn.Dropout(0.3),
            pnn.Linear(6, 3, bias=False),
            pnn.GELU(),
            pnn.Softmax(),
        ),
        (5, 4),
        (5, 3),
    ),
}


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_keeps_dtype_namespace_device_and_shapes(tb: Any, case: str, train: bool) -> None:
    make, x_shape, y_shape = LAYER_CASES[case]
    rng = np.random.default_rng(0)
    for dtype in dtypes_under_test(tb):
        model = make()
        params = tb.init(model, seed=1, dtype=dtype)
        X = tb.asarray(rng.standard_normal(x_shape), dtype)
        assert X.dtype == tb.be.dtype(dtype)
        for path, p in pnn.tree_paths(params):
            assert_same_kind(p, X, f"{case} {dtype} param {path}")

        Y, backprop = model.apply(params, X, train=train, rng=5)
        assert tuple(Y.shape) == y_shape
        assert_same_kind(Y, X, f"{case} {dtype} Y")

        dY = tb.asarray(rng.standard_normal(y_shape), dtype)
        dX, grads = backprop(dY)
        assert tuple(dX.shape) == x_shape
        assert_same_kind(dX, X, f"{case} {dtype} dX")

        want, got = leaves_by_path(params), leaves_by_path(grads)
        assert list(got) == list(want), f"{case}: grads {list(got)} do not mirror params {list(want)}"
        if isinstance(params, list):
            assert isinstance(grads, list) and len(grads) == len(params)
        for path, g in got.items():
            assert tuple(g.shape) == tuple(want[path].shape), f"{case} {dtype} grad {path}"
            assert_same_kind(g, want[path], f"{case} {dtype} grad {path}")


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_does_not_write_into_its_inputs(tb: Any, case: str) -> None:
    make, x_shape, y_shape = LAYER_CASES[case]
    rng = np.random.default_rng(1)
    model = make()
    params = tb.init(model, seed=2)
    X = tb.asarray(rng.standard_normal(x_shape), tb.float)
    dY = tb.asarray(rng.standard_normal(y_shape), tb.float)
    inputs = {"X": X, "dY": dY, **{f"param {k}": v for k, v in pnn.tree_paths(params)}}
    if tb.readonly:  # the harness really hands the library read-only arrays
        for name, a in inputs.items():
            assert isinstance(a, np.ndarray) and not a.flags.writeable, name
    before = {name: host(a) for name, a in inputs.items()}

    for train in (False, True):
        Y, backprop = model.apply(params, X, train=train, rng=0)
        dX, grads = backprop(dY)
        # use the results, so lazy backends really compute them
        assert np.all(np.isfinite(host(Y))) and np.all(np.isfinite(host(dX)))

    for name, a in inputs.items():
        np.testing.assert_array_equal(host(a), before[name], err_msg=f"{case} changed its {name}")


# ---------------------------------------------------------------- 4. semantics


def test_relu_gradient_is_zero_below_zero_and_passes_at_zero(tb: Any) -> None:
    X_host = np.array([[-2.0, -1e-3, 0.0, 1e-3, 3.0], [0.0, -0.5, 0.5, 0.0, -7.0]])
    dY_host = np.arange(1.0, 11.0).reshape(2, 5)
    X, dY = tb.asarray(X_host, tb.float), tb.asarray(dY_host, tb.float)
    Y, backprop = pnn.ReLU().apply({}, X)
    dX, grads = backprop(dY)
    np.testing.assert_array_equal(host(Y), np.maximum(X_host, 0.0).astype(tb.float))
    np.testing.assert_array_equal(host(dX), np.where(X_host < 0, 0.0, dY_host))
    assert host(dX)[0, 2] == 3.0 and host(dX)[1, 0] == 6.0  # X == 0 passes the gradient
    assert grads == {}


def test_leaky_relu_values_and_gradient(tb: Any) -> None:
    X_host = np.array([[-2.0, 0.0, 3.0, -0.5]])
    dY_host = np.array([[1.0, 2.0, 3.0, 4.0]])
    Y, backprop = pnn.LeakyReLU(0.25).apply({}, tb.asarray(X_host, tb.float))
    dX, _ = backprop(tb.asarray(dY_host, tb.float))
    np.testing.assert_array_equal(host(Y), [[-0.5, 0.0, 3.0, -0.125]])
    np.testing.assert_array_equal(host(dX), [[0.25, 2.0, 3.0, 1.0]])


def test_elementwise_activations_match_numpy(tb: Any) -> None:
    X_host = np.linspace(-6.0, 6.0, 25).reshape(5, 5)
    c = np.sqrt(2.0 / np.pi)
    expected = {
        pnn.Sigmoid(): 1.0 / (1.0 + np.exp(-X_host)),
        pnn.Tanh(): np.tanh(X_host),
        pnn.GELU(): 0.5 * X_host * (1.0 + np.tanh(c * (X_host + 0.044715 * X_host**3))),
    }
    for dtype in dtypes_under_test(tb):
        X = tb.asarray(X_host, dtype)
        tol = 1e-12 if dtype == "float64" else 2e-6
        for layer, want in expected.items():
            np.testing.assert_allclose(host(layer({}, X)), want, rtol=tol, atol=tol, err_msg=repr(layer))


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_sums_to_one(tb: Any, axis: int) -> None:
    X_host = np.random.default_rng(3).standard_normal((6, 5)) * 4
    for dtype in dtypes_under_test(tb):
        Y = host(pnn.Softmax(axis=axis)({}, tb.asarray(X_host, dtype)))
        E = np.exp(X_host - X_host.max(axis=axis, keepdims=True))
        tol = 1e-12 if dtype == "float64" else 1e-6
        np.testing.assert_allclose(Y.sum(axis=axis), 1.0, rtol=0, atol=tol * 10)
        np.testing.assert_allclose(Y, E / E.sum(axis=axis, keepdims=True), rtol=tol * 10, atol=tol)
        assert np.all(Y >= 0)


@pytest.mark.filterwarnings("error")  # e.g. NumPy's "overflow in exp"
def test_softmax_is_stable_for_huge_logits(tb: Any) -> None:
    X_host = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4], [-1e4, -1e4, 1e4 - 1.0]])
    want = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 1.0]])
    for dtype in dtypes_under_test(tb):
        Y, backprop = pnn.Softmax().apply({}, tb.asarray(X_host, dtype))
        dX, _ = backprop(tb.asarray(np.ones((3, 3)), dtype))
        Yh, dXh = host(Y), host(dX)
        assert np.all(np.isfinite(Yh)) and np.all(np.isfinite(dXh)), (Yh, dXh)
        np.testing.assert_allclose(Yh, want, atol=1e-6)
        np.testing.assert_allclose(Yh.sum(axis=-1), 1.0, atol=1e-6)
        np.testing.assert_allclose(dXh, 0.0, atol=1e-6)  # dY constant along the row -> no gradient


@pytest.mark.filterwarnings("error")  # e.g. NumPy's "overflow in exp"
def test_sigmoid_is_finite_for_huge_logits_in_float32(tb: Any) -> None:
    X = tb.asarray(np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]]), "float32")
    Y, backprop = pnn.Sigmoid().apply({}, X)
    dX, _ = backprop(tb.asarray(np.ones((1, 5)), "float32"))
    Yh, dXh = host(Y), host(dX)
    assert Yh.dtype == np.float32
    assert np.all(np.isfinite(Yh)) and np.all(np.isfinite(dXh))
    np.testing.assert_allclose(Yh, [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-7)
    np.testing.assert_allclose(dXh, [[0.0, 0.0, 0.25, 0.0, 0.0]], atol=1e-7)


def test_dropout_is_the_identity_at_inference(tb: Any) -> None:
    X_host = np.random.default_rng(4).standard_normal((7, 5))
    X, dY = tb.asarray(X_host, tb.float), tb.asarray(X_host[::-1].copy(), tb.float)
    for layer in (pnn.Dropout(0.5), pnn.Dropout(0.9)):
        Y, backprop = layer.apply({}, X, train=False, rng=0)
        dX, grads = backprop(dY)
        np.testing.assert_array_equal(host(Y), host(X))
        np.testing.assert_array_equal(host(dX), host(dY))
        assert grads == {}
    Y = pnn.Dropout(0.0)({}, X, train=True, rng=0)  # rate 0 keeps everything while training too
    np.testing.assert_array_equal(host(Y), host(X))


def test_dropout_same_seed_same_mask_on_every_backend(tb: Any) -> None:
    X_host = np.random.default_rng(5).standard_normal((20, 8)) + 3.0  # no zeros in X itself
    layer = pnn.Dropout(0.5)
    X = tb.asarray(X_host, tb.float)
    first, second = host(layer({}, X, train=True, rng=11)), host(layer({}, X, train=True, rng=11))
    other = host(layer({}, X, train=True, rng=12))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first == 0, other == 0), "another seed should draw another mask"
    on_numpy = layer({}, X_host.astype(tb.float), train=True, rng=11)
    np.testing.assert_array_equal(first == 0, on_numpy == 0)
    np.testing.assert_allclose(first, on_numpy, rtol=1e-6)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_zeroes_about_rate_and_rescales_the_rest(tb: Any, rate: float) -> None:
    shape = (200, 100)
    X = tb.asarray(np.ones(shape), tb.float)
    Y, backprop = pnn.Dropout(rate).apply({}, X, train=True, rng=2024)
    dX, grads = backprop(tb.asarray(np.full(shape, 2.0), tb.float))
    Yh, dXh = host(Y), host(dX)
    dropped = Yh == 0
    assert abs(dropped.mean() - rate) < 0.02, dropped.mean()
    np.testing.assert_allclose(Yh[~dropped], 1.0 / (1.0 - rate), rtol=1e-6)
    # the backward pass applies the same mask and scale
    np.testing.assert_array_equal(dXh == 0, dropped)
    np.testing.assert_allclose(dXh[~dropped], 2.0 / (1.0 - rate), rtol=1e-6)
    assert grads == {}


def test_layernorm_normalises_each_row(tb: Any) -> None:
    rng = np.random.default_rng(6)
    X_host = 5.0 * rng.standard_normal((8, 16)) + rng.uniform(-10, 10, (8, 1))
    for dtype in dtypes_under_test(tb):
        model = pnn.LayerNorm(16)
        Y = host(model(tb.init(model, dtype=dtype), tb.asarray(X_host, dtype)))
        tol = 1e-10 if dtype == "float64" else 1e-5
        np.testing.assert_allclose(Y.mean(axis=-1), 0.0, atol=tol)
        np.testing.assert_allclose(Y.var(axis=-1), 1.0, rtol=1e-4)


def test_layernorm_matches_numpy_with_gamma_and_beta(tb: Any) -> None:
    rng = np.random.default_rng(7)
    X_host, gamma, beta = rng.standard_normal((5, 6)), rng.uniform(0.5, 2, 6), rng.standard_normal(6)
    Xhat = (X_host - X_host.mean(-1, keepdims=True)) / np.sqrt(X_host.var(-1, keepdims=True) + 1e-5)
    params = {"gamma": tb.asarray(gamma, tb.float), "beta": tb.asarray(beta, tb.float)}
    Y = pnn.LayerNorm(6)(params, tb.asarray(X_host, tb.float))
    tol = 1e-10 if tb.float == "float64" else 1e-5
    np.testing.assert_allclose(host(Y), Xhat * gamma + beta, rtol=tol, atol=tol)


def test_linear_params_and_forward(tb: Any) -> None:
    rng = np.random.default_rng(8)
    X_host = rng.standard_normal((4, 3))
    with_bias, without = pnn.Linear(3, 2), pnn.Linear(3, 2, bias=False)
    p1, p2 = tb.init(with_bias, seed=0), tb.init(without, seed=0)
    assert set(p1) == {"W", "b"} and set(p2) == {"W"}
    assert tuple(p1["W"].shape) == (3, 2) and tuple(p1["b"].shape) == (2,)
    np.testing.assert_array_equal(host(p1["b"]), 0.0)
    _, backprop = without.apply(p2, tb.asarray(X_host, tb.float))
    assert set(backprop(tb.asarray(np.ones((4, 2)), tb.float))[1]) == {"W"}

    b = rng.standard_normal(2)
    p1 = {"W": p1["W"], "b": tb.asarray(b, tb.float)}
    tol = 1e-12 if tb.float == "float64" else 1e-5
    W = host(p1["W"])
    np.testing.assert_allclose(
        host(with_bias(p1, tb.asarray(X_host, tb.float))), X_host @ W + b, rtol=tol, atol=tol
    )
    np.testing.assert_allclose(
        host(without(p2, tb.asarray(X_host, tb.float))), X_host @ W, rtol=tol, atol=tol
    )


# ---------------------------------------------------------------- 5. one seed, the same weights everywhere

INIT_MODELS: dict[str, Callable[[], pnn.Layer]] = {
    "Linear(he)": lambda: pnn.Linear(4, 3),
    "Linear(glorot, bias=False)": lambda: pnn.Linear(5, 2, bias=False, init="glorot"),
    "Linear(normal)": lambda: pnn.Linear(3, 6, init="normal"),
    "LayerNorm": lambda: pnn.LayerNorm(5),
    "Sequential": lambda: pnn.Sequential(
        pnn.Linear(3, 5), pnn.ReLU(), pnn.Dropout(0.2), pnn.LayerNorm(5), pnn.Linear(5, 2, init="glorot")
    ),
}


@pytest.mark.parametrize("name", list(INIT_MODELS))
@FAST
@given(seed=seeds)
def test_init_is_bit_identical_to_numpy(tb: Any, name: str, seed: int) -> None:
    model = INIT_MODELS[name]()
    for dtype in dtypes_under_test(tb):
        params = model.init(seed=seed, backend=tb.be, dtype=dtype)
        reference = model.init(seed=seed, backend="numpy", dtype=dtype)
        got, want = leaves_by_path(params), leaves_by_path(reference)
        assert list(got) == list(want)
        for path, leaf in got.items():
            assert pnn.namespace(leaf) is tb.be.xp, path
            assert array_api_compat.device(leaf) == tb.be.device, path
            assert leaf.dtype == tb.be.dtype(dtype), path
            on_host = pnn.to_numpy(leaf)
            assert on_host.dtype == want[path].dtype, path
            assert np.array_equal(on_host, want[path]), f"{name} {dtype} {path} differs from numpy"


def test_different_seeds_give_different_weights(tb: Any) -> None:
    model = pnn.Linear(4, 3)
    a, b = tb.init(model, seed=0), tb.init(model, seed=1)
    assert not np.array_equal(host(a["W"]), host(b["W"]))
    np.testing.assert_array_equal(host(a["W"]), host(tb.init(model, seed=0)["W"]))
