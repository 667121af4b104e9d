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
