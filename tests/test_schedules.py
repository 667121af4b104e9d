"""Learning-rate schedules: hand-computed values, torch.optim.lr_scheduler, argument checks, comparison by value."""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np
import pytest

import portable_nn as pnn
from portable_nn import schedules

C4, C8 = math.cos(math.pi / 4), math.cos(math.pi / 8)

# (schedule, its values at steps 0, 1, 2, ... computed by hand)
HAND: list[tuple[schedules.Schedule, list[float]]] = [
    (schedules.constant(0.5), [0.5, 0.5, 0.5]),
    (schedules.step_decay(1.0, every=3, factor=0.5), [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]),
    (schedules.exponential(2.0, rate=0.5), [2.0, 1.0, 0.5, 0.25]),
    (schedules.exponential(2.0, rate=0.5, every=2), [2.0, 2 * 0.5**0.5, 1.0, 0.5**0.5, 0.5]),
    (schedules.exponential(2.0, rate=0.5, every=2, staircase=True), [2.0, 2.0, 1.0, 1.0, 0.5]),
    (schedules.linear_warmup(0.8, warmup=4), [0.0, 0.2, 0.4, 0.6, 0.8, 0.8]),
    # warm-up to step 2, cosine from 1.0 at step 2 to 0.2 at step 6, then 0.2
    (schedules.cosine(1.0, total_steps=6, warmup=2, end=0.2),
     [0.0, 0.5, 1.0, 0.2 + 0.4 * (1 + C4), 0.6, 0.2 + 0.4 * (1 - C4), 0.2, 0.2]),
    (schedules.cosine(1.0, total_steps=4), [1.0, 0.5 * (1 + C4), 0.5, 0.5 * (1 - C4), 0.0, 0.0]),
    (schedules.cosine(1.0, total_steps=9, warmup=1), [0.0, 1.0, 0.5 * (1 + C8)]),
]
IDS = [repr(s) for s, _ in HAND]


@pytest.mark.parametrize("schedule, expected", HAND, ids=IDS)
def test_schedules_match_hand_computed_values_for_ints(schedule: Any, expected: list[float]) -> None:
    got = [schedule(t) for t in range(len(expected))]
    assert all(type(v) is float for v in got)
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-15)
    assert schedule(np.int64(2)) == schedule(2)  # NumPy integers count as ints


@pytest.mark.parametrize("schedule, expected", HAND, ids=IDS)
def test_schedules_match_hand_computed_values_for_0d_integer_arrays(tb: Any, schedule: Any, expected: list) -> None:
    for t, want in enumerate(expected):
        step = tb.asarray(np.asarray(t), dtype="int32")
        got = schedule(step)
        assert got.shape == () and pnn.namespace(got) is pnn.namespace(step)
        assert array_api_compat.device(got) == array_api_compat.device(step)
        assert str(got.dtype).endswith("float64" if "float64" in tb.dtypes else "float32")
        np.testing.assert_allclose(float(got), want, rtol=1e-6, atol=1e-7)


def _torch_lrs(make: Any, steps: int, lr: float) -> list[float]:
    """``get_last_lr()`` of a torch scheduler after 0, 1, ... ``steps - 1`` optimizer steps."""
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler, lrs = make(torch.optim.lr_scheduler, opt), []
    for _ in range(steps):
        lrs.append(scheduler.get_last_lr()[0])
        opt.step()
        scheduler.step()
    return lrs


TINY = 1e-12  # torch's LinearLR needs start_factor > 0; ours starts at 0
# (ours, torch's, steps): cosine compared up to total_steps, after which torch's rises again
TORCH = [
    (schedules.step_decay(0.1, every=4, factor=0.3), lambda L, o: L.StepLR(o, step_size=4, gamma=0.3), 20),
    (schedules.exponential(0.1, rate=0.8), lambda L, o: L.ExponentialLR(o, gamma=0.8), 20),
    (schedules.linear_warmup(0.1, warmup=7), lambda L, o: L.LinearLR(o, start_factor=TINY, total_iters=7), 20),
    (schedules.cosine(0.1, total_steps=19, end=0.01), lambda L, o: L.CosineAnnealingLR(o, T_max=19, eta_min=0.01), 20),
    (
        schedules.cosine(0.1, total_steps=19, warmup=5, end=0.01),
        lambda L, o: L.SequentialLR(
            o, [L.LinearLR(o, start_factor=TINY, total_iters=5), L.CosineAnnealingLR(o, T_max=14, eta_min=0.01)],
            milestones=[5],
        ),
        20,
    ),
    (
        schedules.cosine(0.1, total_steps=19, warmup=5),
        lambda L, o: L.SequentialLR(
            o, [L.LambdaLR(o, lambda s: s / 5), L.CosineAnnealingLR(o, T_max=14)], milestones=[5]
        ),
        20,
    ),
]


@pytest.mark.parametrize("schedule, make, steps", TORCH, ids=[repr(s) for s, _, _ in TORCH])
def test_schedules_match_torch_lr_scheduler(tb: Any, schedule: Any, make: Any, steps: int) -> None:
    ref = _torch_lrs(make, steps, lr=0.1)
    np.testing.assert_allclose([schedule(t) for t in range(steps)], ref, rtol=1e-12, atol=2 * TINY)
    arrays = [float(schedule(tb.asarray(np.asarray(t), dtype="int32"))) for t in range(steps)]
    np.testing.assert_allclose(arrays, ref, rtol=1e-6, atol=1e-9)


def test_schedule_is_traced_under_jax_jit(tb: Any) -> None:
    if tb.be.name != "jax":
        pytest.skip("jax.jit")
    import jax

    schedule = schedules.cosine(0.1, total_steps=10, warmup=3, end=0.01)
    jitted = jax.jit(schedule)
    got = [float(jitted(tb.asarray(np.asarray(t), dtype="int32"))) for t in range(12)]
    np.testing.assert_allclose(got, [schedule(t) for t in range(12)], rtol=1e-12)
    assert len(set(got)) == 11  # steps 10 and 11 are both at end; nothing frozen at trace time


BAD: list[tuple[Any, type[Exception], str]] = [
    (lambda: schedules.constant(-0.1), ValueError, r"constant: lr must be a finite number >= 0.0, got -0.1"),
    (lambda: schedules.constant(math.inf), ValueError, r"constant: lr .* got inf"),
    (lambda: schedules.step_decay(0.1, 0, 0.5), ValueError, r"step_decay: every must be >= 1, got 0"),
    (lambda: schedules.step_decay(0.1, 2.5, 0.5), TypeError, r"step_decay: every must be an int, got float"),
    (lambda: schedules.step_decay(0.1, 2, 1.5), ValueError, r"step_decay: factor must be .* in \(0.0, 1.0\], got 1.5"),
    (lambda: schedules.exponential(0.1, 0.0), ValueError, r"exponential: rate .* got 0.0"),
    (lambda: schedules.exponential(0.1, 0.9, staircase="yes"), TypeError, r"exponential: staircase must be True or"),
    (lambda: schedules.linear_warmup(0.1, 0), ValueError, r"linear_warmup: warmup must be >= 1, got 0"),
    (lambda: schedules.cosine(0.1, 0), ValueError, r"cosine: total_steps must be >= 1, got 0"),
    (lambda: schedules.cosine(0.1, 10, warmup=10), ValueError,
     r"cosine: warmup must be smaller than total_steps, got warmup=10, total_steps=10. total_steps counts"),
    (lambda: schedules.cosine(0.1, 10, end=0.2), ValueError, r"cosine: end must be a finite number in \[0.0, 0.1\]"),
    (lambda: schedules.cosine(True, 10), ValueError, r"cosine: peak .* got True"),
    (lambda: schedules.constant(0.1)(-1), ValueError, r"constant: step must be >= 0, got -1"),
    (lambda: schedules.constant(0.1)(1.0), TypeError, r"constant: step must be an int or a 0-d integer array, got float"),
    (lambda: schedules.cosine(0.1, 3)(np.asarray(1.0)), TypeError, r"cosine: step must be an integer count, .*float64"),
    (lambda: schedules.cosine(0.1, 3)(np.arange(2)), ValueError, r"cosine: step must be a 0-d array .* \(2,\)"),
]


@pytest.mark.parametrize("make, exc, match", BAD, ids=[m for _, _, m in BAD])
def test_bad_arguments_raise_naming_the_schedule_and_value(make: Any, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        make()


def test_schedules_compare_and_hash_by_value() -> None:
    a, b = schedules.cosine(0.1, 100, warmup=10), schedules.cosine(np.float64(0.1), np.int64(100), 10, 0)
    assert a == b and hash(a) == hash(b) and type(b.total_steps) is int and type(b.end) is float
    assert a != schedules.cosine(0.1, 100, warmup=11)
    assert schedules.step_decay(0.1, 2, 0.5) != schedules.exponential(0.1, 0.5, every=2, staircase=True)
    with pytest.raises(AttributeError):
        a.peak = 0.2  # type: ignore[misc]
    assert repr(a) == "cosine(peak=0.1, total_steps=100, warmup=10, end=0.0)"


# --------------------------------------------------------------------------- optimizers with a schedule


def _tol(tb: Any) -> dict[str, float]:
    return {"rtol": 1e-12 if tb.float == "float64" else 2e-6, "atol": 1e-12 if tb.float == "float64" else 1e-6}


P0, G = np.array([1.0, -2.0, 0.5]), np.array([0.5, 0.25, -1.0])


def _check_against(tb: Any, opt: Any, hand: Any, steps: int) -> None:
    """Step ``opt`` from params P0 with grads G; after step t the params equal ``hand(t, p)`` (NumPy float64)."""
    params, p = {"W": tb.asarray(P0, dtype=tb.float)}, P0.copy()
    state = opt.init(params)
    for t in range(steps):
        assert opt.learning_rate(state) == opt.lr(t)
        params, state = opt.step(params, {"W": tb.asarray(G, dtype=tb.float)}, state)
        p = hand(t, p)
        assert state.count == t + 1
        np.testing.assert_allclose(pnn.to_numpy(params["W"]), p, **_tol(tb))


def test_sgd_with_a_schedule_and_clip_value_equals_a_hand_written_loop(tb: Any) -> None:
    schedule = schedules.step_decay(0.1, every=2, factor=0.5)
    assert [schedule(t) for t in range(5)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    v = np.zeros(3)

    def hand(t: int, p: np.ndarray) -> np.ndarray:
        v[:] = 0.9 * v + np.clip(G, -0.3, 0.3) + 0.01 * p
        return p - schedule(t) * v

    _check_against(tb, pnn.optim.SGD(lr=schedule, momentum=0.9, weight_decay=0.01, clip_value=0.3), hand, 5)


def test_adamw_with_a_schedule_and_clip_norm_equals_a_hand_written_loop(tb: Any) -> None:
    schedule = schedules.cosine(0.1, total_steps=4, warmup=1)
    m, v = np.zeros(3), np.zeros(3)
    g = G * min(1.0, 0.5 / (np.sqrt(np.sum(G * G)) + 1e-6))  # |G| = 1.15: clipped to 0.5

    def hand(t: int, p: np.ndarray) -> np.ndarray:
        m[:], v[:] = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        direction = (m / (1 - 0.9 ** (t + 1))) / (np.sqrt(v / (1 - 0.999 ** (t + 1))) + 1e-8) + 0.1 * p
        return p - schedule(t) * direction

    assert schedule(0) == 0.0  # warm-up step 0 does not move: the hand loop's direction is still checked after
    _check_against(tb, pnn.optim.AdamW(lr=schedule, weight_decay=0.1, clip_norm=0.5), hand, 5)


@pytest.mark.parametrize("make", [lambda lr: pnn.optim.SGD(lr), lambda lr: pnn.optim.Adam(lr)], ids=["SGD", "Adam"])
def test_lr_scale_halves_the_step_and_a_float_lr_stays_bit_for_bit(tb: Any, make: Any) -> None:
    params = {"W": tb.asarray(np.array([1.0, -2.0]), dtype=tb.float)}
    grads = {"W": tb.asarray(np.array([0.5, 0.25]), dtype=tb.float)}
    opt = make(0.1)
    state = opt.init(params)
    assert state.lr_scale == 1.0 and state.count == 0
    full, _ = opt.step(params, grads, state)
    half, after = opt.step(params, grads, state._replace(lr_scale=0.5))
    assert after.lr_scale == 0.5 and opt.learning_rate(after) == 0.05
    moved = pnn.to_numpy(full["W"]) - pnn.to_numpy(params["W"])
    np.testing.assert_allclose(pnn.to_numpy(half["W"]) - pnn.to_numpy(params["W"]), moved / 2, **_tol(tb))
    if isinstance(opt, pnn.optim.SGD):  # p - lr * g exactly, as before lr_scale existed
        assert np.array_equal(pnn.to_numpy(full["W"]), pnn.to_numpy(params["W"] - 0.1 * grads["W"]))
        assert np.array_equal(pnn.to_numpy(half["W"]), pnn.to_numpy(params["W"] - 0.05 * grads["W"]))
    with pytest.raises(ValueError, match=r"\.step: state.lr_scale must be a finite number >= 0.0, got -1"):
        opt.step(params, grads, state._replace(lr_scale=-1))


@pytest.mark.parametrize("make", [lambda s: pnn.optim.SGD(s, momentum=0.5), lambda s: pnn.optim.Adam(s)],
                         ids=["SGD", "Adam"])
def test_0d_array_count_and_lr_scale_step_like_python_numbers(tb: Any, make: Any) -> None:
    """A compiled loop hands the state back with array scalars: same result, params keep their dtype."""
    opt = make(schedules.exponential(0.1, rate=0.5))
    for dtype in tb.dtypes:
        params = {"W": tb.asarray(np.array([1.0, -2.0]), dtype=dtype)}
        grads = {"W": tb.asarray(np.array([0.5, 0.25]), dtype=dtype)}
        state = opt.init(params)._replace(count=3, lr_scale=0.5)
        arrays = state._replace(count=tb.asarray(np.asarray(3), dtype="int32"),
                                lr_scale=tb.asarray(np.asarray(0.5), dtype=tb.float))
        want, s1 = opt.step(params, grads, state)
        got, s2 = opt.step(params, grads, arrays)
        assert got["W"].dtype == params["W"].dtype and int(s2.count) == s1.count == 4
        np.testing.assert_allclose(pnn.to_numpy(got["W"]), pnn.to_numpy(want["W"]), rtol=2e-6 if dtype == "float32" else 1e-12)
        assert opt.learning_rate(s2) == pytest.approx(opt.learning_rate(s1), rel=1e-6) == 0.1 * 0.5**4 * 0.5


@pytest.mark.parametrize("make, field", [(lambda: pnn.optim.SGD(0.1, momentum=0.9), "velocity"),
                                         (lambda: pnn.optim.Adam(0.1), "mu")], ids=["SGD", "Adam"])
def test_state_check_still_names_the_array_leaf_beside_the_scalar_fields(tb: Any, make: Any, field: str) -> None:
    """count and lr_scale are not checked against params; the moment/velocity leaves still are."""
    params = {"W": tb.asarray(np.ones(2), dtype="float32")}
    other = pnn.to_backend(params, "array_api_strict" if tb.be.name == "numpy" else "numpy")
    opt = make()
    state = opt.init(other)._replace(lr_scale=0.5)
    kinds = [f"{type(a).__module__}.{type(a).__name__}" for a in (other["W"], params["W"])]
    msg = rf"{type(opt).__name__}.step: .* state.{field} at 'W' is a {kinds[0]} but the param is a {kinds[1]}"
    with pytest.raises(TypeError, match=msg):
        opt.step(params, params, state)


def test_old_style_sgd_state_still_works(tb: Any) -> None:
    params = {"W": tb.asarray(np.array([1.0, -2.0]), dtype=tb.float)}
    opt = pnn.optim.SGD(0.1)
    new, state = opt.step(params, params, pnn.optim.SGDState(None))
    assert state == pnn.optim.SGDState(None, 1, 1.0)


def test_jitted_step_traces_the_schedule(tb: Any) -> None:
    if tb.be.name != "jax":
        pytest.skip("jax.jit")
    import jax

    schedule = schedules.cosine(0.1, total_steps=6, warmup=2, end=0.01)
    opt = pnn.optim.SGD(schedule)
    params = {"W": tb.asarray(np.array([1.0, -2.0]), dtype=tb.float)}
    grads = {"W": tb.asarray(np.array([1.0, 1.0]), dtype=tb.float)}
    traces: list[int] = []

    def traced_step(p: Any, g: Any, s: Any) -> Any:
        traces.append(1)
        return opt.step(p, g, s)

    step, lrs = jax.jit(traced_step), []
    state = opt.init(params)
    for t in range(7):
        new, state_jit = step(params, grads, state)
        eager, state = opt.step(params, grads, state)
        np.testing.assert_allclose(pnn.to_numpy(new["W"]), pnn.to_numpy(eager["W"]), rtol=1e-15)
        lrs.append(float(params["W"][0] - new["W"][0]))
        assert int(state_jit.count) == state.count == t + 1
        assert opt.learning_rate(state_jit) == pytest.approx(schedule(t + 1), rel=1e-12)
    np.testing.assert_allclose(lrs, [schedule(t) for t in range(7)], rtol=1e-12, atol=1e-15)
    assert len(set(lrs)) == 7 and len(traces) == 1  # one trace, seven learning rates


def test_optimizers_compare_and_hash_by_their_schedule() -> None:
    a = pnn.optim.Adam(schedules.cosine(0.1, 100, warmup=10))
    b = pnn.optim.Adam(schedules.cosine(0.1, 100, warmup=10))
    assert a == b and hash(a) == hash(b)
    assert a != pnn.optim.Adam(schedules.cosine(0.1, 100, warmup=20))
    assert a != pnn.optim.Adam(0.1) and a != pnn.optim.AdamW(schedules.cosine(0.1, 100, warmup=10))
    assert pnn.optim.SGD(schedules.constant(0.1)) == pnn.optim.SGD(schedules.constant(np.float64(0.1)))
    assert repr(a) == (
        "Adam(lr=cosine(peak=0.1, total_steps=100, warmup=10, end=0.0), b1=0.9, b2=0.999, eps=1e-08, weight_decay=0.0)"
    )


def test_bad_lr_and_state_scalars_raise_clearly(tb: Any) -> None:
    with pytest.raises(TypeError, match=r"SGD: lr must be a number or a pnn.schedules schedule, got <function"):
        pnn.optim.SGD(lambda t: 0.1)
    with pytest.raises(ValueError, match=r"AdamW: lr must be a finite number >= 0.0, got -1.*Or pass a schedule"):
        pnn.optim.AdamW(-1)
    params = {"W": tb.asarray(np.array([1.0, -2.0]), dtype=tb.float)}
    opt = pnn.optim.Adam(schedules.constant(0.1))
    state = opt.init(params)
    with pytest.raises(TypeError, match=r"Adam.step: state.count must be an int, got float"):
        opt.step(params, params, state._replace(count=1.5))
    with pytest.raises(TypeError, match=r"Adam.step: state.lr_scale must be a Python number or a 0-d array"):
        opt.step(params, params, state._replace(lr_scale=[0.5]))
    if tb.be.name != "numpy":
        with pytest.raises(TypeError, match=r"Adam.step: state.count is a numpy.ndarray but the params are .*library"):
            opt.step(params, params, state._replace(count=np.asarray(2)))
