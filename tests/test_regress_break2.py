"""Regression tests for defects found by trying to break the sequence models, generate and mixed precision
(second round), one test per defect, with what was wrong in its docstring.

Each runs on the backend chosen in conftest.py (``tb``) where it applies.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import portable_nn as pnn

SCE = pnn.losses.softmax_cross_entropy


def _lm(V: int = 10, dim: int = 8, max_len: int = 6) -> pnn.Sequential:
    return pnn.Sequential(pnn.Embedding(V, dim), pnn.PositionalEmbedding(max_len, dim),
                          pnn.TransformerBlock(dim, heads=2), pnn.LayerNorm(dim), pnn.Linear(dim, V))


def test_generate_refuses_nan_logits(tb: Any) -> None:
    """NaN logits (a diverged model) gave NaN probabilities, and the sampler turned each into id 0: generate
    returned the prompt followed by zeros, silently."""
    model = _lm()
    params = tb.init(model, dtype="float32")
    params[-1] = {**params[-1], "W": params[-1]["W"] * float("nan")}
    with pytest.raises(ValueError, match=r"generate: the model's next-token logits .* not finite"):
        pnn.generate(model, params, np.array([[1, 2, 3]]), 4)


def test_float16_fit_on_numpy_is_silent_about_the_overflows_the_loss_scale_skips(tb: Any) -> None:
    """fit(precision="float16") on NumPy printed NumPy's RuntimeWarnings (overflow in matmul and cast, invalid
    value in reduce) for every step whose scaled backward pass overflowed, although the loss scale handles
    exactly those by skipping the step (torch's GradScaler is silent). An overflow in the forward pass, and
    params that go non-finite, still surface."""
    if "float16" not in pnn.available_precisions(tb.be):
        pytest.skip(f"{tb.spec} has no float16")
    rng = np.random.default_rng(0)
    X = rng.integers(0, 10, (32, 6))
    T = np.roll(X, -1, axis=1)
    model = _lm()
    params = tb.init(model, dtype="float32")
    opt = pnn.optim.DynamicLossScale(pnn.optim.SGD(0.1, momentum=0.9), init_scale=2.0**40)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _, history = pnn.fit(model, params, X, T, loss=SCE, optimizer=opt, epochs=1, batch_size=8,
                             precision="float16", progress=False)
    assert history["skipped_steps"] == [4.0]  # every step overflowed, and was skipped
    # a real overflow, in the forward pass (float inputs beyond float16's range), still warns on NumPy
    mlp = pnn.Sequential(pnn.Linear(2, 2))
    p = tb.init(mlp, dtype="float32")
    Xf = np.full((4, 2), 1e6, dtype="float32")
    if tb.be.name == "numpy":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pnn.fit(mlp, p, Xf, np.zeros(4, "int64"), loss=SCE, optimizer=pnn.optim.SGD(0.1), epochs=1,
                    precision="float16", progress=False)
        assert any(w.category is RuntimeWarning and "overflow" in str(w.message) for w in caught)
    # and NaN params are still an error
    bad = {**p[0], "W": p[0]["W"] * float("nan")} if isinstance(p, list) else p
    with pytest.raises(pnn.NonFiniteError), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's about the NaN in the forward pass
        pnn.fit(mlp, [bad], np.ones((4, 2), "float32"), np.zeros(4, "int64"), loss=SCE,
                optimizer=pnn.optim.SGD(0.1), epochs=1, precision="float16", progress=False)


def test_init_in_bfloat16_says_to_use_precision(tb: Any) -> None:
    """model.init(dtype="bfloat16") on torch/JAX said 'dtype must be a floating dtype such as float32, got
    bfloat16' (bfloat16 is one) and not how to train in bfloat16: init in float32, pass precision=."""
    if "bfloat16" not in pnn.available_precisions(tb.be):
        pytest.skip(f"{tb.spec} has no bfloat16 (init raises PrecisionError there)")
    with pytest.raises(TypeError, match=r"Linear\(2, 2\)\.init: .*got dtype 'bfloat16'.*precision='bfloat16'"):
        pnn.Linear(2, 2).init(backend=tb.be, dtype="bfloat16")


def test_fit_compile_errors_name_fit(tb: Any) -> None:
    """fit(compile=True) where it cannot compile (NumPy or array_api_strict arrays; a model with Dropout on
    torch/JAX) raised an error that began 'compile_step: ...', a function the user never called."""
    model = pnn.Sequential(pnn.Linear(2, 4), pnn.Dropout(0.5), pnn.Linear(4, 2))
    params = tb.init(model, dtype="float32")
    X = tb.asarray(np.ones((4, 2)), dtype="float32")
    with pytest.raises(ValueError, match=r"^fit: (compile=True needs JAX or torch|.*draws host random numbers)"):
        pnn.fit(model, params, X, np.zeros(4, "int64"), loss=SCE, optimizer=pnn.optim.SGD(0.1), epochs=1,
                compile=True, progress=False)


def test_attention_on_an_empty_sequence_says_so(tb: Any) -> None:
    """MultiHeadAttention on X of shape (batch, 0, dim) failed inside the softmax with NumPy's 'zero-size array to
    reduction operation maximum which has no identity' (another library's message elsewhere), naming no layer."""
    attn = pnn.MultiHeadAttention(4, 2, causal=True)
    params = tb.init(attn, dtype="float32")
    X = tb.asarray(np.ones((2, 0, 4)), dtype="float32")
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(4, 2, causal=True\): X has no positions \(shape \(2, 0, 4\)\)"):
        attn.apply(params, X)
