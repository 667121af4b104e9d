"""TransformerBlock and a small GPT on the backend under test (see conftest.py).

* backprop agrees with finite differences (hypothesis-drawn shapes, heads, causal, mlp_ratio, dropout);
* forward, dX and every gradient agree with a small torch GPT-2 block fed the same params;
* the param layout is the documented dict; dropout draws host random numbers only when > 0;
* a 2-block GPT trained by ``fit`` (SGD: see its test) agrees with NumPy step by step (JAX also compiled);
* bad params and inputs raise errors naming the block.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import portable_nn as pnn
from portable_nn.layers.base import uses_host_rng

from ._support import FAST, SHAPES, assert_same_kind, host, rel_err, seeds

CE = pnn.losses.softmax_cross_entropy



def random_params(tb: Any, block: pnn.TransformerBlock, rng: np.random.Generator, dtype: str) -> Any:
    """Every param random (init's zero biases and unit gammas would hide mistakes)."""
    params = block.init(0, backend="numpy", dtype="float64")
    return pnn.tree_map(lambda a: tb.asarray(rng.standard_normal(a.shape) * 0.4 + (a == 1.0), dtype), params)


# ---------------------------------------------------------------- 1. gradcheck


@settings(FAST, max_examples=4)
@SHAPES
@given(
    batch=st.integers(1, 2),
    seq=st.integers(1, 3),
    heads=st.integers(1, 2),
    head_dim=st.integers(1, 2),
    causal=st.booleans(),
    mlp_ratio=st.integers(1, 2),
    dropout=st.sampled_from([0.0, 0.3]),
    seed=seeds,
)
def test_block_backprop_matches_finite_differences(
    tb: Any, batch: int, seq: int, heads: int, head_dim: int, causal: bool, mlp_ratio: int, dropout: float, seed: int
) -> None:
    if "float64" not in tb.dtypes:
        pytest.skip(f"{tb.spec} has no float64: the gradcheck is float64")
    rng = np.random.default_rng(seed)
    dim = heads * head_dim * 2  # LayerNorm over at least 2 features
    block = pnn.TransformerBlock(dim, heads, mlp_ratio=mlp_ratio, causal=causal, dropout=dropout)
    params = random_params(tb, block, rng, "float64")
    X = tb.asarray(rng.standard_normal((batch, seq, dim)), "float64")
    T = tb.asarray(rng.standard_normal((batch, seq, dim)), "float64")
    pnn.gradcheck(block, params, X, loss=pnn.losses.mean_squared_error, T=T, max_checks=8)


# ---------------------------------------------------------------- 2. torch is the oracle


def test_block_matches_a_torch_gpt2_block(tb: Any) -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(13)
    B, T, D, H, R = 2, 5, 8, 2, 3
    block = pnn.TransformerBlock(D, H, mlp_ratio=R)
    params = random_params(tb, block, rng, tb.float)
    X_host, dY_host = rng.standard_normal((B, T, D)), rng.standard_normal((B, T, D))
    Y, backprop = block.apply(params, tb.asarray(X_host, tb.float))
    dX, grads = backprop(tb.asarray(dY_host, tb.float))

    leaf = {path: torch.tensor(host(a).astype(np.float64), requires_grad=True) for path, a in pnn.tree_paths(params)}
    mha = torch.nn.MultiheadAttention(D, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(leaf["attn.W_qkv"].T)
        mha.in_proj_bias.copy_(leaf["attn.b_qkv"])
        mha.out_proj.weight.copy_(leaf["attn.W_o"].T)
        mha.out_proj.bias.copy_(leaf["attn.b_o"])
    Xt = torch.tensor(host(tb.asarray(X_host, tb.float)).astype(np.float64), requires_grad=True)
    h = F.layer_norm(Xt, (D,), leaf["ln1.gamma"], leaf["ln1.beta"], eps=1e-5)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    Ht = Xt + mha(h, h, h, attn_mask=mask, need_weights=False)[0]
    m = F.layer_norm(Ht, (D,), leaf["ln2.gamma"], leaf["ln2.beta"], eps=1e-5)
    m = F.gelu(m @ leaf["fc.W"] + leaf["fc.b"], approximate="tanh")
    Yt = Ht + m @ leaf["proj.W"] + leaf["proj.b"]
    Yt.backward(torch.tensor(host(tb.asarray(dY_host, tb.float)).astype(np.float64)))
    torch_grads = {path: t.grad for path, t in leaf.items()}
    torch_grads.update({"attn.W_qkv": mha.in_proj_weight.grad.T, "attn.b_qkv": mha.in_proj_bias.grad,
                        "attn.W_o": mha.out_proj.weight.grad.T, "attn.b_o": mha.out_proj.bias.grad})
    tol = 1e-10 if tb.float == "float64" else 2e-5
    assert rel_err(Y, Yt.detach().numpy()) <= tol
    assert rel_err(dX, Xt.grad.numpy()) <= tol
    got = dict(pnn.tree_paths(grads))
    assert set(got) == set(torch_grads)
    for path, want in torch_grads.items():
        if path == "attn.b_qkv":  # its key part is rounding noise around 0: compare Q and V parts
            assert rel_err(host(got[path])[:D], want.numpy()[:D]) <= tol
            assert rel_err(host(got[path])[2 * D :], want.numpy()[2 * D :]) <= tol
            continue
        assert rel_err(got[path], want.numpy()) <= tol, f"{path}: {rel_err(got[path], want.numpy()):.3g}"
        assert_same_kind(got[path], Y, path)


# ---------------------------------------------------------------- 3. layout and dropout


def test_params_layout_is_the_documented_dict(tb: Any) -> None:
    block = pnn.TransformerBlock(8, 2, mlp_ratio=3)
    shapes = {path: tuple(a.shape) for path, a in pnn.tree_paths(tb.init(block))}
    assert shapes == {
        "ln1.gamma": (8,), "ln1.beta": (8,),
        "attn.W_qkv": (8, 24), "attn.b_qkv": (24,), "attn.W_o": (8, 8), "attn.b_o": (8,),
        "ln2.gamma": (8,), "ln2.beta": (8,),
        "fc.W": (8, 24), "fc.b": (24,), "proj.W": (24, 8), "proj.b": (8,),
    }
    W = host(tb.init(block, dtype=tb.float)["fc"]["W"])
    assert 0.01 < W.std() < 0.03  # GPT-2's N(0, 0.02)
    assert repr(pnn.TransformerBlock(8, 2, causal=False, dropout=0.1)) == "TransformerBlock(8, 2, causal=False, dropout=0.1)"


def test_dropout_draws_host_rng_only_when_positive(tb: Any) -> None:
    rng = np.random.default_rng(14)
    plain, dropped = pnn.TransformerBlock(4, 2), pnn.TransformerBlock(4, 2, dropout=0.5)
    assert not plain.draws_host_rng and not uses_host_rng(pnn.Sequential(plain))
    assert dropped.draws_host_rng and uses_host_rng(pnn.Sequential(dropped))
    params = random_params(tb, plain, rng, tb.float)
    X = tb.asarray(rng.standard_normal((2, 3, 4)), tb.float)
    ref = host(plain(params, X))
    np.testing.assert_array_equal(host(dropped(params, X)), ref)  # inference: no dropout
    a, b, c = (host(dropped.apply(params, X, train=True, rng=s)[0]) for s in (1, 1, 2))
    np.testing.assert_array_equal(a, b)  # one seed, the same masks
    assert np.max(np.abs(a - c)) > 1e-3 and np.max(np.abs(a - ref)) > 1e-3


# ---------------------------------------------------------------- 4. a GPT trained by fit, against NumPy


def gpt(vocab: int = 11, dim: int = 16, heads: int = 2, seq: int = 8) -> pnn.Sequential:
    return pnn.Sequential(
        pnn.Embedding(vocab, dim), pnn.PositionalEmbedding(seq, dim),
        pnn.TransformerBlock(dim, heads), pnn.TransformerBlock(dim, heads),
        pnn.LayerNorm(dim), pnn.Linear(dim, vocab),
    )


def test_gpt_fit_agrees_with_numpy(tb: Any) -> None:
    """4 SGD steps of a 2-block GPT agree with NumPy's: float64 to 1e-12, float32 (no_float64) to 1e-5,
    on JAX both the portable steps and its compiled epochs.

    SGD, not Adam: Adam divides each gradient by its own scale (+ eps), so a param whose gradient is
    rounding noise, or nearly so, takes steps of up to ~lr from that noise. Such params are the key
    bias ``attn.b_qkv[D:2D]`` (a zero gradient in exact arithmetic: softmax is shift-invariant per
    query) and, at init, attention's query and key weights (the scores are ~0, the attention almost
    uniform): after 4 Adam steps in float32 they differ by 3.3e-5 between torch and NumPy (float64:
    3.6e-14), which measures Adam, not the layers. The key bias is compared apart, with an absolute
    bound: its values are noise around 0 (each step adds lr times a gradient of the order of the
    dtype's eps), so a relative error means nothing there; it cannot change the model's output.
    """
    rng = np.random.default_rng(15)
    X_host = rng.integers(0, 11, (6, 8))
    Y_host = (X_host + np.arange(8)) % 11  # something to learn
    model, D, lr, steps, dtype = gpt(), 16, 0.1, 4, tb.float
    kwargs: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.SGD(lr=lr, momentum=0.9), epochs=2, batch_size=3,
                                  progress=False)
    tol = 1e-12 if dtype == "float64" else 1e-5
    key_bound = steps * lr * float(np.finfo(dtype).eps)
    ref, ref_history = pnn.fit(model, model.init(0, backend="numpy", dtype=dtype), X_host, Y_host, **kwargs)
    assert ref_history["loss"][-1] < ref_history["loss"][0]
    params = tb.init(model, dtype=dtype)
    for how, compile in [("portable", False)] + ([("compiled", None)] if tb.be.name == "jax" else []):
        got, history = pnn.fit(model, params, tb.asarray(X_host, "int64"), tb.asarray(Y_host, "int64"),
                               compile=compile, **kwargs)
        np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=tol, err_msg=how)
        for (path, p), (_, r) in zip(pnn.tree_paths(got), pnn.tree_paths(ref), strict=True):
            assert_same_kind(p, params[0]["W"], f"{how} {path}")
            p, r = host(p), host(r)
            if path.endswith("attn.b_qkv"):
                key_gap = np.max(np.abs(p[D : 2 * D] - r[D : 2 * D]))
                assert key_gap <= key_bound, f"{how} {path} (key bias): {key_gap:.3g}"
                p, r = np.delete(p, np.s_[D : 2 * D]), np.delete(r, np.s_[D : 2 * D])
            assert rel_err(p, r) <= tol, f"{how} {path}: {rel_err(p, r):.3g}"


# ---------------------------------------------------------------- 5. errors


def test_block_errors_name_the_block(tb: Any) -> None:
    block = pnn.TransformerBlock(4, 2)
    params = tb.init(block)
    with pytest.raises(ValueError, match=r"TransformerBlock\(4, 2\): X must have 3 dimensions \(batch, seq, dim\)"):
        block(params, tb.asarray(np.zeros((3, 4)), tb.float))
    with pytest.raises(ValueError, match=r"TransformerBlock\(4, 2\): params must be a dict with keys \['ln1', 'attn'"):
        block({k: v for k, v in params.items() if k != "fc"}, tb.asarray(np.zeros((1, 3, 4)), tb.float))
    with pytest.raises(ValueError, match=r"TransformerBlock\(4, 2\): .*MultiHeadAttention\(4, 2, causal=True\): params do not fit"):
        block({**params, "attn": tb.init(pnn.MultiHeadAttention(4, 2, bias=False))}, tb.asarray(np.zeros((1, 3, 4)), tb.float))
    with pytest.raises(ValueError, match=r"MultiHeadAttention: dim \(6\) must be divisible by heads \(4\)"):
        pnn.TransformerBlock(6, 4)
    with pytest.raises(ValueError, match=r"TransformerBlock: dropout must be a finite number in \[0, 1\)"):
        pnn.TransformerBlock(4, 2, dropout=1.0)
