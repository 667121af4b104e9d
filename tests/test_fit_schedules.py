"""fit with learning-rate schedules, reduce-on-plateau and clipping; the lr in the history."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import portable_nn as pnn

MSE = pnn.losses.mean_squared_error


def _problem(n=32, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, X @ np.array([[1.0], [-2.0], [0.5]])


def test_history_records_the_lr_of_a_schedule_on_every_path(tb):
    """The lr of each epoch's last step is the schedule at its count (JAX's multi-epoch chunks included)."""
    X, Y = _problem()
    model = pnn.Sequential(pnn.Linear(3, 1))
    schedule = pnn.schedules.step_decay(0.1, every=6, factor=0.5)
    _, history = pnn.fit(model, tb.init(model), X, Y, loss=MSE, optimizer=pnn.optim.SGD(schedule), epochs=5,
                         batch_size=8, progress=False)
    assert history["lr"] == pytest.approx([schedule(4 * (e + 1) - 1) for e in range(5)], rel=1e-12)


def test_a_cosine_schedule_with_clipping_is_traced_not_frozen(tb):
    """fit's default path (a compiled lax.scan on JAX) equals the portable steps: the schedule moves."""
    X, Y = _problem()
    model = pnn.Sequential(pnn.Linear(3, 4), pnn.Tanh(), pnn.Linear(4, 1))
    params = tb.init(model)
    opt = pnn.optim.Adam(pnn.schedules.cosine(5e-2, total_steps=24, warmup=4), clip_norm=0.5)
    kwargs = dict(loss=MSE, optimizer=opt, epochs=6, batch_size=8, progress=False)
    default, h1 = pnn.fit(model, params, X, Y, **kwargs)
    portable, h2 = pnn.fit(model, params, X, Y, compile=False, **kwargs)
    rtol = 1e-9 if tb.float == "float64" else 1e-5
    for a, b in zip(pnn.tree_leaves(default), pnn.tree_leaves(portable), strict=True):
        np.testing.assert_allclose(pnn.to_numpy(a), pnn.to_numpy(b), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(h1["lr"], h2["lr"], rtol=1e-12)
    assert h1["lr"][-1] < h1["lr"][0]


def test_reduce_on_plateau_scales_the_lr_after_patience_epochs(tb, tmp_path):
    X, Y = _problem()
    model = pnn.Sequential(pnn.Linear(3, 1))
    params = tb.init(model)
    # validation targets of the opposite sign: the validation loss only gets worse after epoch 0
    kwargs = dict(loss=MSE, optimizer=pnn.optim.SGD(0.1), epochs=5, batch_size=8, shuffle=False, progress=False,
                  validation_data=(X, -Y), reduce_lr=pnn.schedules.ReduceOnPlateau(factor=0.5, patience=2))
    fitted, history = pnn.fit(model, params, X, Y, **kwargs)
    assert history["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05])  # the lr each epoch trained with
    # a run interrupted in epoch 3 and resumed keeps the scale and the plateau bookkeeping
    path = tmp_path / "run.safetensors"
    calls = []

    @functools.wraps(MSE)
    def interrupting(Yp, T):
        calls.append(1)
        if len(calls) == 3 * 4 + 3 + 2:  # the entry check, 3 epochs of 4 steps and 3 validations, 2 steps
            raise KeyboardInterrupt
        return MSE(Yp, T)

    with pytest.raises(pnn.FitInterrupted):  # the portable path: a Python loss is called every step
        pnn.fit(model, params, X, Y, checkpoint=path, compile=False, **{**kwargs, "loss": interrupting})
    resumed, h2 = pnn.fit(model, params, X, Y, checkpoint=path, resume=True, **kwargs)
    assert h2.keys() == history.keys()
    for key in history:  # the same numbers (to rounding on JAX, whose resumed run mixes the two paths)
        np.testing.assert_allclose(h2[key], history[key], rtol=0 if tb.be.name != "jax" else 1e-9)
    for a, b in zip(pnn.tree_leaves(resumed), pnn.tree_leaves(fitted), strict=True):
        np.testing.assert_allclose(pnn.to_numpy(a), pnn.to_numpy(b), rtol=1e-12 if tb.be.name != "jax" else 1e-6)


def test_reduce_lr_needs_a_plateau_object_and_a_state_with_a_scale(tb):
    X, Y = _problem()
    model = pnn.Sequential(pnn.Linear(3, 1))
    params = tb.init(model)
    with pytest.raises(TypeError, match="reduce_lr must be a pnn.schedules.ReduceOnPlateau"):
        pnn.fit(model, params, X, Y, loss=MSE, optimizer=pnn.optim.SGD(), reduce_lr=0.5, progress=False)
    with pytest.raises(ValueError, match="ReduceOnPlateau: factor must be a finite number in"):
        pnn.schedules.ReduceOnPlateau(factor=1.5)
