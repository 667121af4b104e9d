"""Linear, LayerNorm and softmax_cross_entropy on a sequence model's (batch, seq, features) arrays.

* Linear and LayerNorm on 3-D X agree with torch (forward, dX, every param gradient) and with
  finite differences; Linear's 2-D path is unchanged (bit for bit the 2-D products);
* softmax_cross_entropy on (batch, seq, classes) logits is the mean over every token, the same
  value and dY as the 2-D loss on the flattened tokens; labels of the wrong shape name both shapes.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import portable_nn as pnn
from portable_nn.losses import unchecked

from ._support import FAST, SHAPES, assert_same_kind, host, rel_err, seeds

CE = pnn.losses.softmax_cross_entropy



@settings(FAST, max_examples=4)
@SHAPES
@given(
    shape=st.sampled_from([(2, 3), (2, 3, 4), (1, 2, 2, 3)]),
    out=st.integers(1, 3),
    bias=st.booleans(),
    seed=seeds,
)
def test_linear_and_layernorm_on_nd_match_finite_differences(
    tb: Any, shape: tuple[int, ...], out: int, bias: bool, seed: int
) -> None:
    if "float64" not in tb.dtypes:
        pytest.skip(f"{tb.spec} has no float64: the gradcheck is float64")
    rng = np.random.default_rng(seed)
    f = shape[-1]
    model = pnn.Sequential(pnn.LayerNorm(f), pnn.Linear(f, out, bias=bias))
    params = tb.init(model, seed=seed % 1000, dtype="float64")
    params[0] = {"gamma": tb.asarray(rng.uniform(0.5, 2, f), "float64"), "beta": tb.asarray(rng.standard_normal(f), "float64")}
    if bias:
        params[1] = {**params[1], "b": tb.asarray(rng.standard_normal(out), "float64")}
    X = tb.asarray(rng.standard_normal(shape) * 2 + rng.standard_normal(shape[:-1] + (1,)), "float64")
    T = tb.asarray(rng.standard_normal(shape[:-1] + (out,)), "float64")
    pnn.gradcheck(model, params, X, loss=pnn.losses.mean_squared_error, T=T, max_checks=16)


@pytest.mark.parametrize("layer_name", ["Linear", "LayerNorm"])
def test_linear_and_layernorm_on_3d_match_torch(tb: Any, layer_name: str) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    arr = lambda a: tb.asarray(a, tb.float)  # noqa: E731
    t = lambda a: torch.tensor(host(a).astype(np.float64))  # noqa: E731
    X_host = rng.standard_normal((3, 5, 4)) * 2.0 + 1.0
    if layer_name == "Linear":
        layer: pnn.Layer = pnn.Linear(4, 6)
        params = {"W": arr(rng.standard_normal((4, 6))), "b": arr(rng.standard_normal(6))}
        ref = torch.nn.Linear(4, 6, dtype=torch.float64)
        with torch.no_grad():
            ref.weight.copy_(t(params["W"]).T)
            ref.bias.copy_(t(params["b"]))
        pairs = [("W", lambda: ref.weight.grad.T), ("b", lambda: ref.bias.grad)]
    else:
        layer = pnn.LayerNorm(4)
        params = {"gamma": arr(rng.uniform(0.5, 2.0, 4)), "beta": arr(rng.standard_normal(4))}
        ref = torch.nn.LayerNorm(4, dtype=torch.float64)
        with torch.no_grad():
            ref.weight.copy_(t(params["gamma"]))
            ref.bias.copy_(t(params["beta"]))
        pairs = [("gamma", lambda: ref.weight.grad), ("beta", lambda: ref.bias.grad)]
    dY_host = rng.standard_normal((3, 5, ref(torch.zeros(1, 4, dtype=torch.float64)).shape[-1]))
    Y, backprop = layer.apply(params, arr(X_host))
    dX, grads = backprop(arr(dY_host))
    Xt = t(arr(X_host)).requires_grad_()
    Yt = ref(Xt)
    Yt.backward(t(arr(dY_host)))
    tol = 1e-10 if tb.float == "float64" else 1e-5
    assert tuple(Y.shape) == tuple(Yt.shape)
    assert rel_err(Y, Yt.detach().numpy()) <= tol
    assert rel_err(dX, Xt.grad.numpy()) <= tol
    for key, want in pairs:
        assert rel_err(grads[key], want().numpy()) <= tol, key
        assert_same_kind(grads[key], params[key], key)
    assert_same_kind(Y, params[pairs[0][0]], "Y")
    assert_same_kind(dX, params[pairs[0][0]], "dX")


def test_linear_on_3d_is_linear_on_its_rows_and_2d_is_unchanged(tb: Any) -> None:
    rng = np.random.default_rng(5)
    layer = pnn.Linear(3, 2)
    params = {"W": tb.asarray(rng.standard_normal((3, 2)), tb.float), "b": tb.asarray(rng.standard_normal(2), tb.float)}
    X3, dY3 = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4, 2))
    Y3, bp3 = layer.apply(params, tb.asarray(X3, tb.float))
    dX3, g3 = bp3(tb.asarray(dY3, tb.float))
    Y2, bp2 = layer.apply(params, tb.asarray(X3.reshape(8, 3), tb.float))
    dX2, g2 = bp2(tb.asarray(dY3.reshape(8, 2), tb.float))
    np.testing.assert_array_equal(host(Y3).reshape(8, 2), host(Y2))
    np.testing.assert_array_equal(host(dX3).reshape(8, 3), host(dX2))
    for k in ("W", "b"):
        np.testing.assert_array_equal(host(g3[k]), host(g2[k]))
    # the 2-D path is the notebook's products, X.T @ dY and dY @ W.T
    X = tb.asarray(X3[0], tb.float)
    _, bp = layer.apply(params, X)
    dX, g = bp(tb.asarray(dY3[0], tb.float))
    np.testing.assert_array_equal(host(g["W"]), host(X.T @ tb.asarray(dY3[0], tb.float)))


def test_linear_refuses_one_dimensional_X(tb: Any) -> None:
    layer = pnn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"Linear\(3, 2\): X must have at least 2 dimensions .*\(3,\)"):
        layer(tb.init(layer), tb.asarray(np.ones(3), tb.float))


# ---------------------------------------------------------------- softmax_cross_entropy on tokens


@pytest.mark.parametrize("fast", [False, True], ids=["checked", "unchecked"])
def test_cross_entropy_on_tokens_is_the_mean_over_every_token(tb: Any, fast: bool) -> None:
    rng = np.random.default_rng(6)
    logits, labels = rng.standard_normal((3, 5, 4)) * 3, rng.integers(0, 4, (3, 5))
    loss = unchecked(CE, pnn.namespace(tb.asarray(logits, tb.float))) if fast else CE
    value, dY = loss(tb.asarray(logits, tb.float), tb.asarray(labels, "int64"))
    flat_value, flat_dY = CE(tb.asarray(logits.reshape(15, 4), tb.float), tb.asarray(labels.reshape(15), "int64"))
    np.testing.assert_array_equal(host(value), host(flat_value))
    np.testing.assert_array_equal(host(dY), host(flat_dY).reshape(3, 5, 4))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = -np.take_along_axis(logp, labels[..., None], -1).mean()
    assert abs(float(host(value)) - want) <= (1e-12 if tb.float == "float64" else 1e-5) * abs(want)
    assert tuple(dY.shape) == (3, 5, 4)


def test_cross_entropy_labels_of_the_wrong_shape_name_both_shapes(tb: Any) -> None:
    Y = tb.asarray(np.zeros((2, 3, 4)), tb.float)
    for shape in [(2,), (3, 2), (2, 3, 4)]:
        labels = tb.asarray(np.zeros(shape, dtype=np.int64))
        want = re.escape(f"softmax_cross_entropy: labels have shape {shape}") + ".*" + re.escape("(2, 3, 4); labels must have shape (2, 3)")
        with pytest.raises(ValueError, match=want):
            CE(Y, labels)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\) for 4 classes, got values in \[0, 4\]"):
        CE(Y, tb.asarray(np.array([[0, 1, 4], [2, 3, 0]], dtype=np.int64)))
    with pytest.raises(ValueError, match=r"Y \(logits\) must have at least 2 dimensions"):
        CE(tb.asarray(np.zeros(3), tb.float), tb.asarray(np.zeros((), dtype=np.int64)))
