"""MultiHeadAttention and Residual on the backend under test (see conftest.py).

* backprop agrees with finite differences (hypothesis-drawn batch, seq, heads, head size, causal, bias);
* forward, dX and every param gradient agree with ``torch.nn.MultiheadAttention`` fed
  ``in_proj_weight = W_qkv.T`` (torch is the oracle), with and without the causal mask;
* causal: a position's output ignores later positions; no NaN for huge scores;
* the key bias gets a zero gradient (up to rounding), as softmax is shift-invariant;
* Residual adds its layer's output, passes a model state through, and refuses a shape change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import portable_nn as pnn

from ._support import FAST, SHAPES, assert_same_kind, host, rel_err, seeds


def random_params(tb: Any, layer: pnn.MultiHeadAttention, rng: np.random.Generator, dtype: str) -> dict[str, Any]:
    """Random weights and biases (init's zero biases would hide a bias used wrongly)."""
    return {k: tb.asarray(rng.standard_normal(s) * 0.5, dtype) for k, s in layer.param_shapes().items()}


# ---------------------------------------------------------------- 1. gradcheck


@settings(FAST, max_examples=5)
@SHAPES
@given(
    batch=st.integers(1, 2),
    seq=st.integers(1, 4),
    heads=st.integers(1, 3),
    head_dim=st.integers(1, 2),
    causal=st.booleans(),
    bias=st.booleans(),
    seed=seeds,
)
def test_attention_backprop_matches_finite_differences(
    tb: Any, batch: int, seq: int, heads: int, head_dim: int, causal: bool, bias: bool, seed: int
) -> None:
    if "float64" not in tb.dtypes:
        pytest.skip(f"{tb.spec} has no float64: the gradcheck is float64")
    rng = np.random.default_rng(seed)
    dim = heads * head_dim
    layer = pnn.MultiHeadAttention(dim, heads, causal=causal, bias=bias)
    params = random_params(tb, layer, rng, "float64")
    X = tb.asarray(rng.standard_normal((batch, seq, dim)), "float64")
    T = tb.asarray(rng.standard_normal((batch, seq, dim)), "float64")
    pnn.gradcheck(layer, params, X, loss=pnn.losses.mean_squared_error, T=T, max_checks=12)


# ---------------------------------------------------------------- 2. torch is the oracle


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_attention_matches_torch_multihead_attention(tb: Any, causal: bool, bias: bool) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    B, T, D, H = 2, 5, 12, 3
    layer = pnn.MultiHeadAttention(D, H, causal=causal, bias=bias)
    params = random_params(tb, layer, rng, tb.float)
    X_host, dY_host = rng.standard_normal((B, T, D)), rng.standard_normal((B, T, D))
    Y, backprop = layer.apply(params, tb.asarray(X_host, tb.float))
    dX, grads = backprop(tb.asarray(dY_host, tb.float))

    t = lambda a: torch.tensor(host(a).astype(np.float64))  # noqa: E731
    ref = torch.nn.MultiheadAttention(D, H, bias=bias, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        ref.in_proj_weight.copy_(t(params["W_qkv"]).T)
        ref.out_proj.weight.copy_(t(params["W_o"]).T)
        if bias:
            ref.in_proj_bias.copy_(t(params["b_qkv"]))
            ref.out_proj.bias.copy_(t(params["b_o"]))
    Xt = t(tb.asarray(X_host, tb.float)).requires_grad_()
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1) if causal else None
    Yt, _ = ref(Xt, Xt, Xt, attn_mask=mask, need_weights=False)
    Yt.backward(t(tb.asarray(dY_host, tb.float)))
    pairs = [("Y", Y, Yt.detach()), ("dX", dX, Xt.grad), ("W_qkv", grads["W_qkv"], ref.in_proj_weight.grad.T),
             ("W_o", grads["W_o"], ref.out_proj.weight.grad.T)]
    if bias:
        pairs += [("b_qkv", grads["b_qkv"], ref.in_proj_bias.grad), ("b_o", grads["b_o"], ref.out_proj.bias.grad)]
    tol = 1e-10 if tb.float == "float64" else 1e-5
    for name, got, want in pairs:
        assert rel_err(got, want.numpy()) <= tol, f"{name}: {rel_err(got, want.numpy()):.3g}"
        assert_same_kind(got, params["W_qkv"], name)
    assert set(grads) == set(params)


# ---------------------------------------------------------------- 3. semantics


def test_causal_outputs_ignore_later_positions_and_full_ones_do_not(tb: Any) -> None:
    rng = np.random.default_rng(8)
    X1 = rng.standard_normal((2, 6, 4))
    X2 = X1.copy()
    X2[:, 4:, :] += 5.0  # change the last two positions only
    for causal in (True, False):
        layer = pnn.MultiHeadAttention(4, 2, causal=causal)
        params = random_params(tb, layer, rng, tb.float)
        Y1, Y2 = (host(layer(params, tb.asarray(X, tb.float))) for X in (X1, X2))
        if causal:
            np.testing.assert_array_equal(Y1[:, :4], Y2[:, :4])
        else:
            assert np.max(np.abs(Y1[:, :4] - Y2[:, :4])) > 1e-3


def test_huge_scores_give_no_nan_forward_or_backward(tb: Any) -> None:
    rng = np.random.default_rng(9)
    layer = pnn.MultiHeadAttention(4, 2, causal=True)
    params = {k: v * 1e3 for k, v in random_params(tb, layer, rng, tb.float).items()}
    Y, backprop = layer.apply(params, tb.asarray(rng.standard_normal((2, 5, 4)) * 10, tb.float))
    dX, grads = backprop(tb.asarray(rng.standard_normal((2, 5, 4)), tb.float))
    for name, a in [("Y", Y), ("dX", dX), *grads.items()]:
        assert np.all(np.isfinite(host(a))), name


def test_the_key_bias_gets_no_gradient(tb: Any) -> None:
    """softmax is shift-invariant per query, so b_qkv[D:2D] (the key bias) has a zero gradient in exact
    arithmetic: what is left is rounding (why the parity tests compare it apart)."""
    rng = np.random.default_rng(10)
    layer = pnn.MultiHeadAttention(6, 2, causal=True)
    params = random_params(tb, layer, rng, tb.float)
    _, backprop = layer.apply(params, tb.asarray(rng.standard_normal((2, 4, 6)), tb.float))
    db = host(backprop(tb.asarray(rng.standard_normal((2, 4, 6)), tb.float))[1]["b_qkv"])
    eps = 1e-14 if tb.float == "float64" else 1e-5
    assert np.max(np.abs(db[6:12])) <= eps * np.max(np.abs(db))
    assert np.min(np.abs(db[12:])) > 0


def test_attention_errors_name_the_layer(tb: Any) -> None:
    with pytest.raises(ValueError, match=r"MultiHeadAttention: dim \(10\) must be divisible by heads \(4\).*heads=5"):
        pnn.MultiHeadAttention(10, 4)
    layer = pnn.MultiHeadAttention(4, 2)
    params = tb.init(layer)
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(4, 2\): X must have 3 dimensions \(batch, seq, dim\)"):
        layer(params, tb.asarray(np.zeros((5, 4)), tb.float))
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(4, 2\): X must have 4 features"):
        layer(params, tb.asarray(np.zeros((1, 5, 3)), tb.float))
    assert repr(pnn.MultiHeadAttention(4, 2, causal=True, bias=False)) == "MultiHeadAttention(4, 2, causal=True, bias=False)"
    assert set(tb.init(pnn.MultiHeadAttention(4, 2, bias=False))) == {"W_qkv", "W_o"}


# ---------------------------------------------------------------- 4. Residual


def test_residual_adds_its_layer_and_passes_its_gradient(tb: Any) -> None:
    rng = np.random.default_rng(11)
    inner = pnn.Sequential(pnn.LayerNorm(3), pnn.Linear(3, 3))
    res = pnn.Residual(inner)
    params = tb.init(res)
    assert [p for p, _ in pnn.tree_paths(params)] == [p for p, _ in pnn.tree_paths(tb.init(inner))]  # no nesting
    X_host, dY_host = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4, 3))
    X, dY = tb.asarray(X_host, tb.float), tb.asarray(dY_host, tb.float)
    Y, backprop = res.apply(params, X)
    F, inner_backprop = inner.apply(params, X)
    np.testing.assert_array_equal(host(Y), host(X + F))
    dX, grads = backprop(dY)
    dF, inner_grads = inner_backprop(dY)
    np.testing.assert_array_equal(host(dX), host(dY + dF))
    assert backprop(dY, need_dX=False)[0] is None
    if "float64" in tb.dtypes:
        params64 = tb.init(res, dtype="float64")
        X64 = tb.asarray(X_host, "float64")
        pnn.gradcheck(res, params64, X64, loss=pnn.losses.mean_squared_error, T=tb.asarray(dY_host, "float64"))


def test_residual_matches_torch(tb: Any) -> None:
    """``X + Linear(LayerNorm(X))`` in torch, forward and backward (autograd): Y, dX and every param's grad."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    res = pnn.Residual(pnn.Sequential(pnn.LayerNorm(3), pnn.Linear(3, 3)))
    params = tb.init(res, seed=4)
    X_host, dY_host = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4, 3))
    X, dY = tb.asarray(X_host, tb.float), tb.asarray(dY_host, tb.float)
    Y, backprop = res.apply(params, X)
    dX, grads = backprop(dY)
    ln, lin = torch.nn.LayerNorm(3, dtype=torch.float64), torch.nn.Linear(3, 3, dtype=torch.float64)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor(host(params[0]["gamma"]).astype(np.float64)))
        ln.bias.copy_(torch.tensor(host(params[0]["beta"]).astype(np.float64)))
        lin.weight.copy_(torch.tensor(host(params[1]["W"]).astype(np.float64).T))  # ours (in, out), torch's (out, in)
        lin.bias.copy_(torch.tensor(host(params[1]["b"]).astype(np.float64)))
    Xt = torch.tensor(host(X).astype(np.float64), requires_grad=True)
    Yt = Xt + lin(ln(Xt))
    Yt.backward(torch.tensor(host(dY).astype(np.float64)))
    tol = 1e-10 if tb.float == "float64" else 1e-5
    assert rel_err(Y, Yt.detach().numpy()) <= tol and rel_err(dX, Xt.grad.numpy()) <= tol
    assert rel_err(grads[0]["gamma"], ln.weight.grad.numpy()) <= tol
    assert rel_err(grads[0]["beta"], ln.bias.grad.numpy()) <= tol
    assert rel_err(grads[1]["W"], lin.weight.grad.numpy().T) <= tol
    assert rel_err(grads[1]["b"], lin.bias.grad.numpy()) <= tol


def test_residual_passes_a_model_state_and_refuses_a_shape_change(tb: Any) -> None:
    res = pnn.Residual(pnn.BatchNorm(3))
    variables = tb.init(res)
    assert type(variables) is pnn.Variables and set(variables.state) == {"mean", "var"}
    X = tb.asarray(np.random.default_rng(12).standard_normal((4, 3)), tb.float)
    trained, _ = pnn.fit(res, variables, X, X, loss=pnn.losses.mean_squared_error, optimizer=pnn.optim.SGD(lr=0.1),
                         epochs=1, batch_size=4, progress=False)
    assert np.max(np.abs(host(trained.state["mean"]))) > 0  # the running mean moved
    wide = pnn.Residual(pnn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"Residual\(Linear\(3, 2\)\): the layer maps X of shape \(4, 3\) to \(4, 2\)"):
        wide(tb.init(wide), X)
    with pytest.raises(TypeError, match="Residual: layer must be a Layer"):
        pnn.Residual("relu")  # type: ignore[arg-type]
