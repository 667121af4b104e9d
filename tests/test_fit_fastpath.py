"""fit's fast portable loop (issue #13): it reads only the loss each step, checks the params at the
end of each epoch and on Ctrl-C, and replays the epoch checking every step when either finds a
NaN/inf; the errors name the same step and carry the same params as a per-step check."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np
import pytest

import portable_nn as pnn

MSE = pnn.losses.mean_squared_error


class Unused(pnn.Layer):
    """``Y = X``; its param ``a`` gets a zero gradient and never reaches the loss, so a NaN in it stays hidden."""

    def init_params(self, rng: np.random.Generator, be: pnn.Backend, dtype: str) -> Any:
        return {"a": be.asarray(np.ones(1, dtype=dtype))}

    def apply(self, params: Any, X: Any, *, train: bool = False, rng: Any = None) -> Any:
        a = params["a"]

        def backprop(dY: Any, *, need_dX: bool = True) -> Any:
            return dY, {"a": pnn.namespace(a).zeros_like(a)}

        return X, backprop


def _leaves(params: Any) -> list[np.ndarray]:
    return [np.array(pnn.to_numpy(a), copy=True) for a in pnn.tree_leaves(params)]


def _same(a: Any, b: Any) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("epochs", [1, 3])
def test_nan_params_that_never_reach_the_loss_name_the_step_that_made_them(tb: Any, epochs: int) -> None:
    """Adam(eps=0) turns the unused param into 0/0 = NaN at step 0 while every loss stays finite:
    the end-of-epoch check finds it and the replay names step 0 with the initial params."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((12, 3)), rng.standard_normal((12, 1))
    model = pnn.Sequential(pnn.Linear(3, 1), Unused())
    params = tb.init(model)
    with pytest.raises(pnn.NonFiniteError, match="epoch 0, step 0") as info:
        pnn.fit(model, params, X, Y, loss=MSE, optimizer=pnn.optim.Adam(eps=0.0), epochs=epochs, batch_size=4,
                shuffle=False, progress=False, compile=False)
    assert (info.value.epoch, info.value.step) == (0, 0)
    assert _same(info.value.params, params)


@pytest.mark.filterwarnings("ignore:overflow", "ignore:invalid")
def test_the_fast_loop_stops_where_a_per_step_check_stops(tb: Any) -> None:
    """The same divergent run with a checkpoint (every step checked in full) and without (loss only)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 3))
    Y = X @ rng.standard_normal((3, 1)) * 1e3
    model = pnn.Sequential(pnn.Linear(3, 8), pnn.ReLU(), pnn.Linear(8, 1))
    params = tb.init(model)
    errors = []
    for checkpoint in (None, "every"):
        kw: dict[str, Any] = {}
        if checkpoint:
            import tempfile

            kw = {"checkpoint": tempfile.mktemp(suffix=".safetensors"), "checkpoint_every": 1000}
        with pytest.raises(pnn.NonFiniteError) as info:
            pnn.fit(model, params, X, Y, loss=pnn.losses.sum_squared_error, optimizer=pnn.optim.SGD(lr=1.0),
                    epochs=50, batch_size=8, progress=False, compile=False, **kw)
        errors.append(info.value)
    fast, full = errors
    assert (fast.epoch, fast.step) == (full.epoch, full.step)
    assert _same(fast.params, full.params)
    assert all(np.isfinite(a).all() for a in _leaves(fast.params))


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_ctrl_c_after_a_step_that_made_hidden_nan_params_reports_that_step(tb: Any) -> None:
    """A per-step check would have stopped at step 0 before Ctrl-C was seen; so does the fast loop."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((12, 3)), rng.standard_normal((12, 1))
    model = pnn.Sequential(pnn.Linear(3, 1), Unused())
    params = tb.init(model)
    calls = []

    def interrupting_loss(Yp: Any, T: Any) -> Any:
        if Yp.shape[0] > 1:  # not fit's one-row entry check
            calls.append(1)
            if len(calls) == 2:  # Ctrl-C during the 2nd step: step 0 completed (and made NaN params)
                raise KeyboardInterrupt
        return MSE(Yp, T)

    with pytest.raises(pnn.NonFiniteError, match="epoch 0, step 0") as info:
        pnn.fit(model, params, X, Y, loss=interrupting_loss, optimizer=pnn.optim.Adam(eps=0.0), epochs=2,
                batch_size=4, shuffle=False, progress=False, compile=False)
    assert _same(info.value.params, params)


def test_ctrl_c_with_finite_params_still_returns_the_last_completed_step(tb: Any) -> None:
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((12, 3)), rng.standard_normal((12, 1))
    model = pnn.Sequential(pnn.Linear(3, 1), Unused())
    params = tb.init(model)
    kw: dict[str, Any] = dict(optimizer=pnn.optim.Adam(), batch_size=4, shuffle=False, progress=False, compile=False)
    one, _ = pnn.fit(model, params, X[:4], Y[:4], loss=MSE, epochs=1, **kw)
    calls = []

    def interrupting_loss(Yp: Any, T: Any) -> Any:
        if Yp.shape[0] > 1:
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
        return MSE(Yp, T)

    with pytest.raises(pnn.FitInterrupted) as info:
        pnn.fit(model, params, X, Y, loss=interrupting_loss, epochs=2, **kw)
    assert _same(info.value.params, one)


def test_an_unhashable_user_loss_trains(tb: Any) -> None:
    """fit swaps a built-in loss for its unchecked twin; a user's loss that is an unhashable object (a dataclass
    instance) is left as it is, not looked up as a dict key (that raised TypeError: unhashable type)."""
    from dataclasses import dataclass

    @dataclass
    class Scaled:
        w: float = 1.0

        def __call__(self, Yp: Any, T: Any) -> Any:
            value, dY = pnn.losses.softmax_cross_entropy(Yp, T)
            return value * self.w, dY * self.w

    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((12, 3)), rng.integers(0, 3, 12)
    model = pnn.Sequential(pnn.Linear(3, 3))
    params = tb.init(model)
    kw: dict[str, Any] = dict(optimizer=pnn.optim.SGD(0.1), epochs=2, batch_size=4, progress=False, compile=False)
    mine, h1 = pnn.fit(model, params, X, Y, loss=Scaled(), **kw)
    ref, h2 = pnn.fit(model, params, X, Y, loss=pnn.losses.softmax_cross_entropy, **kw)
    assert h1 == h2 and _same(mine, ref)


def test_a_user_loss_is_called_as_it_is(tb: Any) -> None:
    """Only the built-in losses run unchecked: a partial of one, or a user's loss, is called unchanged."""
    import functools

    seen = []

    def mine(Yp: Any, T: Any) -> Any:
        seen.append(Yp.shape[0])
        return pnn.losses.softmax_cross_entropy(Yp, T)

    for loss in (functools.partial(pnn.losses.softmax_cross_entropy), mine):
        assert pnn.losses.unchecked(loss, np) is loss
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((12, 3)), rng.integers(0, 3, 12)
    model = pnn.Sequential(pnn.Linear(3, 3))
    pnn.fit(model, tb.init(model), X, Y, loss=mine, optimizer=pnn.optim.SGD(), epochs=1, batch_size=4,
            progress=False, compile=False)
    assert seen.count(4) == 3


class Leak(pnn.Layer):
    """``Y = X + 0 * a``; the grad of ``a`` is NaN for a batch with a value above 1e3, so a NaN ``a`` reaches
    the next step's predictions (not its loss: a strict loss raises on them first)."""

    def init_params(self, rng: np.random.Generator, be: pnn.Backend, dtype: str) -> Any:
        return {"a": be.asarray(np.zeros(1, dtype=dtype))}

    def apply(self, params: Any, X: Any, *, train: bool = False, rng: Any = None) -> Any:
        a = params["a"]
        xp = pnn.namespace(a)

        def backprop(dY: Any, *, need_dX: bool = True) -> Any:
            dev = array_api_compat.device(a)
            nan, zero = xp.asarray(float("nan"), dtype=a.dtype, device=dev), xp.asarray(0.0, dtype=a.dtype, device=dev)
            return dY, {"a": xp.reshape(xp.where(xp.any(X > 1e3), nan, zero), (1,))}

        return X + 0.0 * a, backprop


def _strict_loss(Yp: Any, T: Any) -> Any:
    xp = pnn.namespace(Yp)
    if not bool(xp.all(xp.isfinite(Yp))):
        raise ValueError("strict_loss: NaN predictions")
    return pnn.losses.softmax_cross_entropy(Yp, T)


@pytest.mark.parametrize("on_nonfinite", ["raise", "stop"])
@pytest.mark.filterwarnings("ignore:fit. the loss")
def test_a_step_that_raises_on_hidden_nan_params_is_reported_as_the_nan(tb: Any, on_nonfinite: str) -> None:
    """Step 1 makes NaN params with a finite loss; step 2's strict loss raises on the NaN predictions. A per-step
    check stops at step 1 (NonFiniteError, or "stop" returns the params before it); the loss-only loop used to
    let the loss's ValueError out instead."""
    rng = np.random.default_rng(0)
    X, Y = np.zeros((40, 3)), rng.integers(0, 3, 40)
    X[12, 1] = 1e4  # in batch 1
    model = pnn.Sequential(pnn.Linear(3, 3), Leak())
    params = tb.init(model)
    results = []
    for checkpoint in (None, "every step checked"):
        kw: dict[str, Any] = {}
        if checkpoint:
            import tempfile

            kw = {"checkpoint": tempfile.mktemp(suffix=".safetensors"), "checkpoint_every": 1000}
        try:
            out, _ = pnn.fit(model, params, X, Y, loss=_strict_loss, optimizer=pnn.optim.SGD(1e-9), epochs=2,
                             batch_size=8, shuffle=False, progress=False, compile=False, on_nonfinite=on_nonfinite,
                             **kw)
            results.append(("returned", None, out))
        except pnn.NonFiniteError as e:
            results.append(("raised", (e.epoch, e.step), e.params))
    (kind, where, fast), (kind_full, where_full, full) = results
    assert kind == kind_full == ("raised" if on_nonfinite == "raise" else "returned")
    assert where == where_full == ((0, 1) if on_nonfinite == "raise" else None)
    assert _same(fast, full)


@pytest.mark.filterwarnings("ignore:overflow", "ignore:invalid")
def test_ignore_asks_for_no_params_check(tb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """on_nonfinite="ignore" reads no check, so its portable steps skip the sum over the params (it cost about 25%
    of a small MLP's step); the history, NaNs included, is that of the checked run."""
    from portable_nn.training._step import TrainStep

    asked = []
    original = TrainStep.fit_step

    def recording(self: Any, *args: Any) -> Any:
        asked.append(args[5])  # (params, state, X, T, rng, check, W)
        return original(self, *args)

    rng = np.random.default_rng(1)
    X = rng.standard_normal((24, 3))
    Y = X @ rng.standard_normal((3, 1)) * 1e3
    model = pnn.Sequential(pnn.Linear(3, 4), pnn.ReLU(), pnn.Linear(4, 1))
    params = tb.init(model)
    kw: dict[str, Any] = dict(loss=pnn.losses.sum_squared_error, optimizer=pnn.optim.SGD(1.0), epochs=3, batch_size=8,
                              progress=False, compile=False, on_nonfinite="ignore")
    import tempfile

    _, full = pnn.fit(model, params, X, Y, checkpoint=tempfile.mktemp(suffix=".safetensors"), **kw)
    monkeypatch.setattr(TrainStep, "fit_step", recording)
    _, fast = pnn.fit(model, params, X, Y, **kw)
    assert asked == [False] * 9
    assert np.isnan(fast["loss"][-1])
    np.testing.assert_array_equal(fast["loss"], full["loss"])
