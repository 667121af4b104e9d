"""Optimizers: convergence on a quadratic, purity, state types, float32 preservation."""

from __future__ import annotations

import numpy as np
import pytest

import portable_nn as pnn

OPTIMIZERS = {
    "sgd": lambda: pnn.optim.SGD(lr=0.1),
    "sgd_momentum": lambda: pnn.optim.SGD(lr=0.05, momentum=0.9),
    "sgd_nesterov": lambda: pnn.optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
    "sgd_weight_decay": lambda: pnn.optim.SGD(lr=0.1, weight_decay=1e-4),
    "adam": lambda: pnn.optim.Adam(lr=0.05),
    "adamw": lambda: pnn.optim.AdamW(lr=0.05, weight_decay=1e-4),
}


def _quadratic_params(tb, dtype):
    target = np.array([[1.5, -2.0], [0.5, 3.0]])
    params = {"W": tb.asarray(np.zeros((2, 2)), dtype=dtype), "b": tb.asarray(np.ones(3), dtype=dtype)}
    return params, target


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_converges_on_a_quadratic(tb, name):
    """minimize 0.5 |W - A|^2 + 0.5 |b|^2; the optimum is W = A, b = 0."""
    dtype = tb.float
    params, target = _quadratic_params(tb, dtype)
    A = tb.asarray(target, dtype=dtype)
    opt = OPTIMIZERS[name]()
    state = opt.init(params)
    for _ in range(400):
        grads = {"W": params["W"] - A, "b": params["b"]}
        params, state = opt.step(params, grads, state)
    tol = 1e-2 if "decay" in name or name == "adamw" else 1e-3
    np.testing.assert_allclose(pnn.to_numpy(params["W"]), target, atol=tol)
    np.testing.assert_allclose(pnn.to_numpy(params["b"]), 0.0, atol=tol)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_step_is_pure_and_keeps_dtype_namespace_device(tb, name):
    import array_api_compat

    for dtype in tb.dtypes:
        params, _ = _quadratic_params(tb, dtype)
        before = pnn.tree_map(lambda a: pnn.to_numpy(a).copy(), params)
        grads = pnn.tree_map(lambda a: a * 0.5 + 1.0, params)
        opt = OPTIMIZERS[name]()
        state = opt.init(params)
        new, state2 = opt.step(params, grads, state)
        for k in params:  # inputs untouched
            assert np.array_equal(pnn.to_numpy(params[k]), before[k])
            assert new[k].dtype == params[k].dtype
            assert pnn.namespace(new[k]) is pnn.namespace(params[k])
            assert array_api_compat.device(new[k]) == array_api_compat.device(params[k])
            assert not np.array_equal(pnn.to_numpy(new[k]), before[k])  # it did move
        assert type(state2) is type(state)
        assert type(state).__name__.endswith("State")


def test_adam_bias_correction_first_step_is_lr_sized(tb):
    """After one Adam step every param moves by ~lr (the bias-corrected ratio is ~1)."""
    params = {"W": tb.asarray(np.zeros(4), dtype=tb.float)}
    grads = {"W": tb.asarray(np.array([1e-3, 2.0, -5.0, 30.0]), dtype=tb.float)}
    opt = pnn.optim.Adam(lr=0.1)
    new, state = opt.step(params, grads, opt.init(params))
    np.testing.assert_allclose(pnn.to_numpy(new["W"]), [-0.1, -0.1, 0.1, -0.1], rtol=1e-4)
    assert state.count == 1


def test_sgd_matches_hand_written_momentum(tb):
    p0, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    params = {"W": tb.asarray(p0, dtype=tb.float)}
    opt = pnn.optim.SGD(lr=0.1, momentum=0.9, nesterov=True)
    state = opt.init(params)
    v, p = np.zeros(2), p0.copy()
    for _ in range(3):
        params, state = opt.step(params, {"W": tb.asarray(g, dtype=tb.float)}, state)
        v = 0.9 * v + g
        p = p - 0.1 * (g + 0.9 * v)
    np.testing.assert_allclose(pnn.to_numpy(params["W"]), p, rtol=1e-6)


def test_mismatched_grads_structure_raises(tb):
    params = {"W": tb.asarray(np.zeros(2), dtype=tb.float)}
    opt = pnn.optim.SGD(lr=0.1)
    with pytest.raises(ValueError, match="structure"):
        opt.step(params, {"V": params["W"]}, opt.init(params))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_update_then_apply_updates_is_step_bit_for_bit(tb, name):
    """optax style: ``p + updates`` with ``updates = opt.update(...)`` equals ``opt.step`` exactly, and is pure."""
    params, _ = _quadratic_params(tb, tb.float)
    grads = pnn.tree_map(lambda a: a * 0.5 + 1.0, params)
    opt = OPTIMIZERS[name]()
    state = opt.init(params)
    before = pnn.tree_map(lambda a: pnn.to_numpy(a).copy(), params)
    stepped, state_a = opt.step(params, grads, state)
    updates, state_b = opt.update(grads, state, params)
    applied = pnn.optim.apply_updates(params, updates)
    for a, b in zip(pnn.tree_leaves(stepped), pnn.tree_leaves(applied), strict=True):
        assert np.array_equal(pnn.to_numpy(a), pnn.to_numpy(b))
    for a, b in zip(pnn.tree_leaves(state_a), pnn.tree_leaves(state_b), strict=True):
        if hasattr(a, "shape"):  # the moments; Adam's count is an int, SGD without momentum has None
            assert np.array_equal(pnn.to_numpy(a), pnn.to_numpy(b))
        else:
            assert a == b
    for k in params:  # nothing written in place
        assert np.array_equal(pnn.to_numpy(params[k]), before[k])


def test_apply_updates_in_place_into_owned_params(tb):
    if tb.readonly or tb.be.name == "jax":
        pytest.skip("in place needs writable arrays (JAX rebinds instead)")
    params = {"W": tb.asarray(np.ones((2, 2)), dtype=tb.float)}
    W = params["W"]
    out = pnn.optim.apply_updates(params, {"W": tb.asarray(np.full((2, 2), -0.25), dtype=tb.float)}, into="params")
    assert out["W"] is W
    np.testing.assert_array_equal(pnn.to_numpy(W), np.full((2, 2), 0.75))


def test_apply_updates_rejects_bad_arguments(tb):
    params = {"W": tb.asarray(np.ones((2, 2)), dtype=tb.float)}
    with pytest.raises(ValueError, match="into must be"):
        pnn.optim.apply_updates(params, params, into="grads")
    with pytest.raises(ValueError, match="apply_updates: updates do not have the structure of params"):
        pnn.optim.apply_updates(params, [params["W"]])
