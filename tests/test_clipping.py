"""Gradient clipping (pnn.optim.clip_grads and the optimizers' clip_norm / clip_value): hand values, torch, jit."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.optim import clip_grads

# two leaves of global norm 13: sqrt(3^2 + 4^2 + 12^2)
HAND = {"a": np.array([3.0, -4.0]), "b": np.array([[12.0]])}


def _grads(tb: Any, tree: dict[str, np.ndarray], dtype: str) -> dict[str, Any]:
    return {k: tb.asarray(v, dtype=dtype) for k, v in tree.items()}


def _host(tree: Any) -> dict[str, np.ndarray]:
    return {k: pnn.to_numpy(v) for k, v in tree.items()}


@pytest.mark.parametrize("options, expected", [
    ({"clip_norm": 1.0}, {"a": np.array([3.0, -4.0]) / (13 + 1e-6), "b": np.array([[12.0]]) / (13 + 1e-6)}),
    ({"clip_norm": 13.5}, HAND),  # under the norm: unchanged
    ({"clip_value": 3.5}, {"a": np.array([3.0, -3.5]), "b": np.array([[3.5]])}),
    # by value first (to [3, -3.5, 3.5], norm sqrt(33.5)), then by norm
    ({"clip_value": 3.5, "clip_norm": 2.0},
     {k: v * 2.0 / (math.sqrt(33.5) + 1e-6) for k, v in {"a": np.array([3.0, -3.5]), "b": np.array([[3.5]])}.items()}),
])
def test_clip_grads_matches_hand_computed_values(tb: Any, options: dict[str, float], expected: Any) -> None:
    for dtype in tb.dtypes:
        grads = _grads(tb, HAND, dtype)
        got = clip_grads(grads, **options)
        assert got is not grads
        for k in HAND:
            assert got[k] is not grads[k] and got[k].dtype == grads[k].dtype
            assert pnn.namespace(got[k]) is pnn.namespace(grads[k])
            np.testing.assert_allclose(pnn.to_numpy(got[k]), expected[k], rtol=1e-6 if dtype == "float32" else 1e-14)
        np.testing.assert_array_equal(pnn.to_numpy(grads["a"]), HAND["a"])  # the caller's arrays untouched


def _torch_clipped(tree: dict[str, np.ndarray], dtype: str, clip: str, value: float) -> dict[str, np.ndarray]:
    """The grads ``tree`` after torch.nn.utils.clip_grad_norm_ (``clip="norm"``) or clip_grad_value_."""
    torch = pytest.importorskip("torch")
    tensors = {k: torch.zeros(v.shape, dtype=getattr(torch, dtype)) for k, v in tree.items()}
    for k, t in tensors.items():
        t.grad = torch.tensor(tree[k], dtype=t.dtype)
    if clip == "norm":
        torch.nn.utils.clip_grad_norm_(list(tensors.values()), value)
    else:
        torch.nn.utils.clip_grad_value_(list(tensors.values()), value)
    return {k: t.grad.numpy() for k, t in tensors.items()}


@pytest.mark.parametrize("clip, value", [("norm", 0.5), ("norm", 100.0), ("value", 0.7)])
def test_clip_grads_matches_torch(tb: Any, clip: str, value: float) -> None:
    rng = np.random.default_rng(0)
    tree = {"W": rng.standard_normal((4, 3)) * 3, "b": rng.standard_normal(3), "c": rng.standard_normal((2, 2, 2))}
    for dtype in tb.dtypes:
        ref = _torch_clipped(tree, dtype, clip, value)
        got = _host(clip_grads(_grads(tb, tree, dtype), **{f"clip_{clip}": value}))
        for k in tree:  # torch sums per-tensor norms: the global norm agrees to rounding
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-6 if dtype == "float32" else 1e-12)
            if clip == "value" or value == 100.0:  # elementwise, or unclipped (times exactly 1.0)
                np.testing.assert_array_equal(got[k], ref[k])


def test_clip_norm_of_nonfinite_grads_is_nonfinite_and_float16_does_not_overflow(tb: Any) -> None:
    got = clip_grads(_grads(tb, {"a": np.array([np.nan, 1.0])}, tb.float), clip_norm=1.0)
    assert np.isnan(pnn.to_numpy(got["a"])).all()  # as torch: fit's NaN guard then stops
    try:
        half = _grads(tb, {"a": np.array([300.0, 400.0])}, "float16")
    except (TypeError, AttributeError):
        return  # array_api_strict has no float16
    got = clip_grads(half, clip_norm=1.0)["a"]  # 300^2 + 400^2 overflows float16's 65504
    assert got.dtype == half["a"].dtype
    np.testing.assert_allclose(pnn.to_numpy(got).astype(np.float64), [0.6, 0.8], rtol=2e-3)


def test_clipping_traces_under_jax_jit(tb: Any) -> None:
    if tb.be.name != "jax":
        pytest.skip("jax.jit")
    import jax

    grads = _grads(tb, HAND, tb.float)
    clip = jax.jit(lambda g: clip_grads(g, clip_norm=1.0, clip_value=3.5))
    for k, v in clip(grads).items():
        np.testing.assert_allclose(pnn.to_numpy(v), pnn.to_numpy(clip_grads(grads, clip_norm=1.0, clip_value=3.5)[k]),
                                   rtol=1e-15)
    opt = pnn.optim.Adam(0.1, clip_norm=1.0)
    params = _grads(tb, {"a": np.zeros(2), "b": np.zeros((1, 1))}, tb.float)
    jitted, _ = jax.jit(opt.step)(params, grads, opt.init(params))
    eager, _ = opt.step(params, grads, opt.init(params))
    for k in params:
        np.testing.assert_allclose(pnn.to_numpy(jitted[k]), pnn.to_numpy(eager[k]), rtol=1e-12)


@pytest.mark.parametrize("make", [pnn.optim.SGD, pnn.optim.Adam, pnn.optim.AdamW])
def test_optimizers_clip_before_the_update(tb: Any, make: Any) -> None:
    """SGD moves by lr * clipped grad; every optimizer equals itself fed the clipped grads."""
    params = _grads(tb, {"a": np.ones(2), "b": np.ones((1, 1))}, tb.float)
    grads = _grads(tb, HAND, tb.float)
    for options in ({"clip_norm": 1.0}, {"clip_value": 3.5}):
        clipped = clip_grads(grads, **options)
        got, s1 = make(0.1, **options).step(params, grads, make(0.1).init(params))
        want, s2 = make(0.1).step(params, clipped, make(0.1).init(params))
        for k in params:
            assert np.array_equal(pnn.to_numpy(got[k]), pnn.to_numpy(want[k]))
        if make is pnn.optim.SGD:
            np.testing.assert_allclose(pnn.to_numpy(got["b"]), 1 - 0.1 * pnn.to_numpy(clipped["b"]), rtol=1e-6)
    np.testing.assert_array_equal(pnn.to_numpy(grads["a"]), HAND["a"])


@pytest.mark.parametrize("name", ["clip_norm", "clip_value"])
@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, "1"])
def test_bad_clip_options_raise_naming_the_optimizer(name: str, bad: Any) -> None:
    for make in (pnn.optim.SGD, pnn.optim.Adam, pnn.optim.AdamW):
        with pytest.raises(ValueError, match=rf"^{make.__name__}: {name} must be a finite number > 0.0, got {bad!r}"):
            make(0.1, **{name: bad})


def test_clip_options_compare_hash_and_show() -> None:
    a = pnn.optim.SGD(0.1, clip_norm=1)
    assert a == pnn.optim.SGD(0.1, clip_norm=1.0) and hash(a) == hash(pnn.optim.SGD(0.1, clip_norm=np.float64(1)))
    assert a != pnn.optim.SGD(0.1, clip_norm=2.0) and a != pnn.optim.SGD(0.1, clip_value=1.0) and a != pnn.optim.SGD(0.1)
    assert repr(a) == "SGD(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0, clip_norm=1.0)"
    assert repr(pnn.optim.SGD(0.1)) == "SGD(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0)"
    assert repr(pnn.optim.AdamW(clip_value=0.5)).endswith("weight_decay=0.01, clip_value=0.5)")
