"""Embedding and PositionalEmbedding on the backend under test (see conftest.py).

* backprop agrees with finite differences (hypothesis-drawn shapes, both backward methods);
* repeated ids sum their gradients: the one-hot and the segment methods agree with
  ``numpy.add.at`` for many repeats, and with each other;
* forward and backward agree with ``torch.nn.Embedding`` (torch is the oracle);
* out-of-range ids, float ids, wrong ranks and too-long sequences raise clear errors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import portable_nn as pnn
from portable_nn.layers.embedding import ONEHOT_MAX

from ._support import FAST, SHAPES, assert_same_kind, host, rel_err, seeds

CE = pnn.losses.softmax_cross_entropy
METHODS = ["onehot", "segments"]


def ids(tb: Any, a: Any) -> Any:
    return tb.asarray(np.asarray(a), "int64")



# ---------------------------------------------------------------- 1. gradcheck


@settings(FAST, max_examples=4)
@SHAPES
@given(
    shape=st.sampled_from([(3,), (2, 4), (1, 5), (3, 2)]),
    vocab=st.integers(1, 6),
    dim=st.integers(1, 4),
    method=st.sampled_from(METHODS),
    seed=seeds,
)
def test_embedding_backprop_matches_finite_differences(
    tb: Any, shape: tuple[int, ...], vocab: int, dim: int, method: str, seed: int
) -> None:
    if "float64" not in tb.dtypes:
        pytest.skip(f"{tb.spec} has no float64: the gradcheck is float64")
    rng = np.random.default_rng(seed)
    model = pnn.Sequential(pnn.Embedding(vocab, dim, backward=method), pnn.Linear(dim, 3))
    params = tb.init(model, seed=seed % 1000, dtype="float64")
    X = ids(tb, rng.integers(0, vocab, shape))
    T = ids(tb, rng.integers(0, 3, shape))
    pnn.gradcheck(model, params, X, loss=CE, T=T, max_checks=16)


@settings(FAST, max_examples=3)
@SHAPES
@given(batch=st.integers(1, 3), seq=st.integers(1, 5), extra=st.integers(0, 2), seed=seeds)
def test_positional_embedding_backprop_matches_finite_differences(
    tb: Any, batch: int, seq: int, extra: int, seed: int
) -> None:
    if "float64" not in tb.dtypes:
        pytest.skip(f"{tb.spec} has no float64: the gradcheck is float64")
    rng = np.random.default_rng(seed)
    layer = pnn.PositionalEmbedding(seq + extra, 3)  # unused positions (extra) get zero gradients
    params = {"W": tb.asarray(rng.standard_normal((seq + extra, 3)), "float64")}
    X = tb.asarray(rng.standard_normal((batch, seq, 3)), "float64")
    T = tb.asarray(rng.standard_normal((batch, seq, 3)), "float64")
    pnn.gradcheck(layer, params, X, loss=pnn.losses.mean_squared_error, T=T)


# ---------------------------------------------------------------- 2. repeated ids


@pytest.mark.parametrize("method", METHODS)
def test_repeated_ids_sum_their_gradients(tb: Any, method: str) -> None:
    """300 ids from a vocabulary of 7, most of them id 3: every row of dW is the sum of its ids' rows."""
    rng = np.random.default_rng(0)
    vocab, dim = 7, 5
    X_host = np.where(rng.random((12, 25)) < 0.6, 3, rng.integers(0, 5, (12, 25)))  # ids 5 and 6 never occur
    dY_host = rng.standard_normal((12, 25, dim))
    layer = pnn.Embedding(vocab, dim, backward=method)
    params = tb.init(layer)
    Y, backprop = layer.apply(params, ids(tb, X_host))
    dX, grads = backprop(tb.asarray(dY_host, tb.float))
    want = np.zeros((vocab, dim))
    np.add.at(want, X_host.reshape(-1), dY_host.reshape(-1, dim))
    assert dX is None
    tol = 1e-12 if tb.float == "float64" else 1e-5
    assert rel_err(grads["W"], want) <= tol
    np.testing.assert_array_equal(host(grads["W"])[5:], 0.0)
    np.testing.assert_array_equal(host(Y), host(params["W"])[X_host])
    assert_same_kind(grads["W"], params["W"], "dW")
    assert_same_kind(Y, params["W"], "Y")


def test_onehot_and_segments_agree_and_auto_switches_by_vocabulary(tb: Any) -> None:
    rng = np.random.default_rng(1)
    for vocab in (3, ONEHOT_MAX + 5):
        X = ids(tb, rng.integers(0, min(vocab, 40), (4, 33)))
        dY = tb.asarray(rng.standard_normal((4, 33, 2)), tb.float)
        grads = {}
        for method in ("onehot", "segments", "auto"):
            layer = pnn.Embedding(vocab, 2, backward=method)
            params = tb.init(layer)
            grads[method] = host(layer.apply(params, X)[1](dY)[1]["W"])
        tol = 1e-12 if tb.float == "float64" else 1e-5
        assert rel_err(grads["segments"], grads["onehot"]) <= tol
        auto_is = "onehot" if vocab <= ONEHOT_MAX else "segments"
        np.testing.assert_array_equal(grads["auto"], grads[auto_is])


def test_one_dimensional_ids_give_one_vector_each(tb: Any) -> None:
    layer = pnn.Embedding(4, 3)
    params = tb.init(layer)
    Y, backprop = layer.apply(params, ids(tb, [2, 0, 2]))
    assert tuple(Y.shape) == (3, 3)
    np.testing.assert_array_equal(host(Y), host(params["W"])[[2, 0, 2]])
    dW = host(backprop(tb.asarray(np.ones((3, 3)), tb.float))[1]["W"])
    np.testing.assert_array_equal(dW, [[1, 1, 1], [0, 0, 0], [2, 2, 2], [0, 0, 0]])


# ---------------------------------------------------------------- 3. torch is the oracle


@pytest.mark.parametrize("method", METHODS)
def test_embedding_matches_torch(tb: Any, method: str) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    layer = pnn.Embedding(9, 4, backward=method)
    params = tb.init(layer, seed=3)
    X_host, dY_host = rng.integers(0, 9, (3, 7)), rng.standard_normal((3, 7, 4))
    Y, backprop = layer.apply(params, ids(tb, X_host))
    _, grads = backprop(tb.asarray(dY_host, tb.float))
    emb = torch.nn.Embedding(9, 4, dtype=torch.float64)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(host(params["W"]).astype(np.float64)))
    Yt = emb(torch.tensor(X_host))
    Yt.backward(torch.tensor(host(tb.asarray(dY_host, tb.float)).astype(np.float64)))
    tol = 1e-10 if tb.float == "float64" else 1e-5
    assert rel_err(Y, Yt.detach().numpy()) <= tol
    assert rel_err(grads["W"], emb.weight.grad.numpy()) <= tol


def test_init_matches_torch_s_distribution_and_positions_gpt2_s() -> None:
    W = pnn.to_numpy(pnn.Embedding(200, 50).init(0, backend="numpy", dtype="float64")["W"])
    assert abs(W.mean()) < 0.02 and abs(W.std() - 1.0) < 0.02  # N(0, 1), as torch.nn.Embedding
    P = pnn.to_numpy(pnn.PositionalEmbedding(200, 50).init(0, backend="numpy", dtype="float64")["W"])
    assert abs(P.std() - 0.02) < 0.001  # N(0, 0.02), as GPT-2's wpe


# ---------------------------------------------------------------- 4. PositionalEmbedding


def test_positional_embedding_adds_the_first_seq_rows(tb: Any) -> None:
    rng = np.random.default_rng(3)
    layer = pnn.PositionalEmbedding(6, 2)
    params = tb.init(layer)
    X_host = rng.standard_normal((2, 4, 2))
    Y, backprop = layer.apply(params, tb.asarray(X_host, tb.float))
    W = host(params["W"])
    tol = 1e-12 if tb.float == "float64" else 1e-6
    np.testing.assert_allclose(host(Y), X_host + W[:4], rtol=tol, atol=tol)
    dY_host = rng.standard_normal((2, 4, 2))
    dX, grads = backprop(tb.asarray(dY_host, tb.float))
    np.testing.assert_allclose(host(dX), dY_host, rtol=tol)
    np.testing.assert_allclose(host(grads["W"]), np.concatenate([dY_host.sum(0), np.zeros((2, 2))]), rtol=tol, atol=tol)
    assert_same_kind(grads["W"], params["W"], "dW")


def test_positional_embedding_matches_torch(tb: Any) -> None:
    """GPT-2's wpe in torch: ``X + nn.Embedding(max_len, D)(arange(seq))``, forward and backward (autograd)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    layer = pnn.PositionalEmbedding(7, 3)
    params = tb.init(layer, seed=5)
    X_host, dY_host = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 3))
    X, dY = tb.asarray(X_host, tb.float), tb.asarray(dY_host, tb.float)
    Y, backprop = layer.apply(params, X)
    dX, grads = backprop(dY)
    wpe = torch.nn.Embedding(7, 3, dtype=torch.float64)
    with torch.no_grad():
        wpe.weight.copy_(torch.tensor(host(params["W"]).astype(np.float64)))
    Xt = torch.tensor(host(X).astype(np.float64), requires_grad=True)
    Yt = Xt + wpe(torch.arange(5))
    Yt.backward(torch.tensor(host(dY).astype(np.float64)))
    tol = 1e-12 if tb.float == "float64" else 1e-6
    assert rel_err(Y, Yt.detach().numpy()) <= tol
    assert rel_err(dX, Xt.grad.numpy()) <= tol
    assert rel_err(grads["W"], wpe.weight.grad.numpy()) <= tol  # rows 5 and 6 unused: zero in both


# ---------------------------------------------------------------- 5. errors


def test_out_of_range_ids_raise_naming_the_range(tb: Any) -> None:
    layer = pnn.Embedding(5, 2)
    params = tb.init(layer)
    for bad, seen in (([[0, 5, 1]], r"\[0, 5\]"), ([[-1, 2]], r"\[-1, 2\]")):
        with pytest.raises(ValueError, match=rf"Embedding\(5, 2\): ids must be in \[0, 5\) .* got values in {seen}"):
            layer(params, ids(tb, bad))


def test_float_ids_raise_a_type_error_naming_the_layer(tb: Any) -> None:
    layer = pnn.Embedding(5, 2)
    with pytest.raises(TypeError, match=r"Embedding\(5, 2\).*integer indices"):
        layer(tb.init(layer), tb.asarray(np.array([[0.0, 1.0]]), tb.float))


def test_ids_of_another_rank_raise(tb: Any) -> None:
    layer = pnn.Embedding(5, 2)
    with pytest.raises(ValueError, match=r"Embedding\(5, 2\): X must be integer ids \(batch, seq\).*\(1, 2, 2\)"):
        layer(tb.init(layer), ids(tb, np.zeros((1, 2, 2), dtype=np.int64)))


def test_a_sequence_longer_than_max_len_raises(tb: Any) -> None:
    layer = pnn.PositionalEmbedding(4, 2)
    X = tb.asarray(np.zeros((1, 5, 2)), tb.float)
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(4, 2\): the sequence has 5 positions .* max_len is 4"):
        layer(tb.init(layer), X)
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(4, 2\): X must have 3 dimensions"):
        layer(tb.init(layer), tb.asarray(np.zeros((5, 2)), tb.float))


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="Embedding: backward must be"):
        pnn.Embedding(3, 2, backward="scatter")
    with pytest.raises(ValueError, match="Embedding: num_embeddings must be >= 1"):
        pnn.Embedding(0, 2)
    with pytest.raises(ValueError, match="PositionalEmbedding: max_len must be >= 1"):
        pnn.PositionalEmbedding(0, 2)
