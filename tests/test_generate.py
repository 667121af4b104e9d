"""pnn.generate on the backend under test (see conftest.py).

* the prompt followed by the new ids, integer, on the params' backend and device, (batch, seq) or (seq,);
* greedy (top_k=1) is the argmax of the model's last logits, step by step;
* one seed gives the same ids as on NumPy (the draws are made on the host);
* top_k restricts the draws; the context is cropped to the model's max_len;
* bad arguments raise clear errors.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.generation import _next_logits, context_length, is_causal

from ._support import host

VOCAB, DIM, MAX_LEN = 7, 8, 6


def small_gpt(causal: bool = True) -> pnn.Sequential:
    return pnn.Sequential(
        pnn.Embedding(VOCAB, DIM), pnn.PositionalEmbedding(MAX_LEN, DIM), pnn.TransformerBlock(DIM, 2, causal=causal),
        pnn.LayerNorm(DIM), pnn.Linear(DIM, VOCAB, init="glorot"),
    )


@pytest.fixture(scope="module")
def model_and_params(tb: Any) -> tuple[pnn.Sequential, Any]:
    model = small_gpt()
    return model, tb.init(model, seed=3)


PROMPT = np.array([[1, 2, 3], [4, 0, 6]])


def test_returns_the_prompt_then_new_integer_ids_on_the_params_device(tb: Any, model_and_params: Any) -> None:
    model, params = model_and_params
    out = pnn.generate(model, params, tb.asarray(PROMPT, "int64"), 4, seed=1)
    assert tuple(out.shape) == (2, 7)
    assert pnn.namespace(out) is pnn.namespace(params[0]["W"])
    assert array_api_compat.device(out) == array_api_compat.device(params[0]["W"])
    assert pnn.namespace(out).isdtype(out.dtype, "integral")
    ids = host(out)
    np.testing.assert_array_equal(ids[:, :3], PROMPT)
    assert ids.min() >= 0 and ids.max() < VOCAB
    one = pnn.generate(model, params, [1, 2, 3], 2, seed=1)  # host data, one prompt: (seq,)
    assert tuple(one.shape) == (5,) and host(one)[:3].tolist() == [1, 2, 3]
    np.testing.assert_array_equal(host(pnn.generate(model, params, PROMPT, 0)), PROMPT)


@pytest.mark.parametrize("causal", [True, False], ids=["causal-padded", "full-exact"])
def test_greedy_is_the_argmax_of_the_last_logits(tb: Any, causal: bool) -> None:
    """A causal model runs on a right-padded fixed window, any other on exactly the ids so far: both
    give the argmax of the model's logits on the ids so far (padding a full-attention model would not)."""
    model = small_gpt(causal)
    params = pnn.tree_map(lambda a: a * 4.0, tb.init(model, seed=3))  # large weights: attention far from uniform
    assert is_causal(model) is causal
    out = host(pnn.generate(model, params, PROMPT, 4, top_k=1, seed=0))
    again = host(pnn.generate(model, params, PROMPT, 4, top_k=1, seed=99))
    np.testing.assert_array_equal(out, again)  # greedy draws nothing
    for step in range(4):
        context = out[:, : 3 + step][:, -MAX_LEN:]
        logits = host(model(params, tb.asarray(context, "int64")))[:, -1, :]
        np.testing.assert_array_equal(out[:, 3 + step], logits.argmax(axis=1))


def test_one_seed_gives_the_same_ids_as_on_numpy(tb: Any) -> None:
    model = small_gpt()
    ref_params = model.init(3, backend="numpy", dtype=tb.float)
    params = tb.init(model, seed=3)
    for kwargs in ({"seed": 5}, {"seed": 6, "temperature": 2.0, "top_k": 3}):
        want = pnn.generate(model, ref_params, PROMPT, 5, **kwargs)
        got = pnn.generate(model, params, tb.asarray(PROMPT, "int64"), 5, **kwargs)
        np.testing.assert_array_equal(host(got), host(want))
        assert np.array_equal(host(got), host(pnn.generate(model, params, PROMPT, 5, **kwargs)))
    a, b = (host(pnn.generate(model, params, PROMPT, 6, seed=s, temperature=3.0)) for s in (1, 2))
    assert not np.array_equal(a, b)  # another seed, other draws (hot distribution: almost surely)


def test_top_k_draws_only_among_the_k_most_likely(tb: Any, model_and_params: Any) -> None:
    model, params = model_and_params
    out = host(pnn.generate(model, params, PROMPT, 3, top_k=2, temperature=5.0, seed=4))
    for step in range(3):
        logits = host(model(params, tb.asarray(out[:, : 3 + step][:, -MAX_LEN:], "int64")))[:, -1, :]
        top2 = np.argsort(-logits, axis=1)[:, :2]
        assert all(out[i, 3 + step] in top2[i] for i in range(2))


@pytest.mark.parametrize("causal", [True, False], ids=["causal-padded", "full-exact"])
def test_each_step_s_logits_are_the_model_s_on_the_ids_so_far(tb: Any, causal: bool) -> None:
    """generate's padded window (causal models) changes the logits by rounding only; a full-attention
    model runs unpadded (padding would change its logits by ~1)."""
    model = small_gpt(causal)
    params = tb.init(model, seed=3)
    ids = tb.asarray(PROMPT, "int64")
    got = host(_next_logits(model, params, PROMPT, MAX_LEN, is_causal(model), lambda a: tb.asarray(a, "int64")))
    want = host(model(params, ids))[:, -1, :]
    tol = 1e-12 if tb.float == "float64" else 1e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.max(np.abs(want)))


def test_is_causal_knows_the_library_s_layers_only() -> None:
    assert is_causal(pnn.Sequential(pnn.Embedding(3, 4), pnn.Residual(pnn.Sequential(pnn.LayerNorm(4), pnn.GELU()))))
    assert is_causal(pnn.MultiHeadAttention(4, 2, causal=True))
    assert not is_causal(pnn.Sequential(pnn.Embedding(3, 4), pnn.TransformerBlock(4, 2, causal=False)))
    assert not is_causal(pnn.Sequential(pnn.Embedding(3, 4), pnn.Flatten()))  # mixes positions
    assert not is_causal(SumAll())  # a layer of yours: unknown


def test_the_context_is_cropped_to_max_len(tb: Any, model_and_params: Any) -> None:
    model, params = model_and_params
    assert context_length(model) == MAX_LEN
    assert context_length(pnn.Sequential(pnn.Linear(2, 2))) is None
    long = np.array([[0, 1, 2, 3, 4, 5, 6, 0, 1]])  # longer than max_len
    out = host(pnn.generate(model, params, long, 4, top_k=1))
    tail = host(pnn.generate(model, params, long[:, -MAX_LEN:], 4, top_k=1))
    assert out.shape == (1, 13)
    np.testing.assert_array_equal(out[:, 9:], tail[:, MAX_LEN:])


def test_jax_compiles_nothing_per_new_token(tb: Any, model_and_params: Any) -> None:
    """The ids so far grew on the device by one id a step (a concat and a slice of a new shape each step):
    eager JAX compiled two new programs per token and kept them, 74 ms and 2.9 MiB of memory a token for a
    small GPT (RSS +1.2 GiB over 400 tokens). The ids now stay on the host beside the sampler; the device
    sees one fixed window a step, and a call compiles at most its output's copy."""
    if tb.be.name != "jax":
        pytest.skip("JAX compiles each new shape of an eager op")
    import logging

    import jax

    model, params = model_and_params
    compiles: list[str] = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("Compiling"):
                compiles.append(record.getMessage()[:80])

    log = logging.getLogger("jax")
    handler, level = Count(), log.level
    pnn.generate(model, params, PROMPT, 3 * MAX_LEN, seed=0)  # every window shape and read position seen
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        with jax.log_compiles(True):
            pnn.generate(model, params, PROMPT, 10 * MAX_LEN, seed=1)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert len(compiles) <= 2, compiles  # the output's copy to the device, at its new length


def test_bad_arguments_raise(tb: Any, model_and_params: Any) -> None:
    model, params = model_and_params
    cases: list[tuple[type[Exception], str, dict[str, Any], Any]] = [
        (ValueError, r"generate: temperature must be a finite number > 0", {"temperature": 0.0}, PROMPT),
        (ValueError, r"generate: top_k must be >= 1", {"top_k": 0}, PROMPT),
        (ValueError, r"generate: top_k must be in \[1, 7\] for a vocabulary of 7, got 8", {"top_k": 8}, PROMPT),
        (TypeError, r"generate: top_k must be an int", {"top_k": 2.0}, PROMPT),
        (TypeError, r"generate: prompt_ids must be integer token ids, got floats", {}, PROMPT.astype(float)),
        (ValueError, r"generate: the prompt is empty", {}, np.zeros((2, 0), dtype=np.int64)),
        (ValueError, r"generate: the prompt is empty", {}, np.zeros(0, dtype=np.int64)),
        (ValueError, r"generate: prompt_ids must be \(batch, seq\) or \(seq,\)", {}, np.zeros((1, 1, 1), dtype=np.int64)),
        (ValueError, r"Embedding\(7, 8\): ids must be in \[0, 7\)", {}, np.array([[1, 9]])),
    ]
    for exc, match, kwargs, prompt in cases:
        with pytest.raises(exc, match=match):
            pnn.generate(model, params, prompt, 2, **kwargs)
    with pytest.raises(ValueError, match=r"generate: max_new_tokens must be >= 0"):
        pnn.generate(model, params, PROMPT, -1)
    bad = pnn.Sequential(pnn.Embedding(3, 2), SumAll())  # gives (batch,), not logits
    with pytest.raises(ValueError, match=r"generate: the model must map ids .* it gave shape \(2,\)"):
        pnn.generate(bad, tb.init(bad), np.array([[1, 2], [0, 0]]), 1)


class SumAll(pnn.Layer):
    def apply(self, params: Any, X: Any, *, train: bool = False, rng: Any = None) -> Any:
        return pnn.namespace(X).sum(X, axis=(1, 2)), None
