"""pnn.optim.DynamicLossScale: step for step what torch.amp.GradScaler does; traced and eager agree; checkpoints."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.optim import DynamicLossScale, LossScaleState

SHAPES = {"W": (3, 2), "b": (2,)}
INNER = {
    "sgd": lambda: pnn.optim.SGD(0.1, momentum=0.9),
    "adam": lambda: pnn.optim.Adam(0.01),
    "sgd_clip": lambda: pnn.optim.SGD(0.1, momentum=0.9, clip_norm=1.0),
}


def _grads_sequence(n: int = 16, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Grads of a scaled loss: finite ones with an inf (steps 2, 8, 12) or a NaN (step 9) among them."""
    rng = np.random.default_rng(seed)
    seq = [{k: rng.standard_normal(s) * 8.0 for k, s in SHAPES.items()} for _ in range(n)]
    seq[2]["W"][0, 1] = np.inf
    seq[8]["W"][0, 1] = np.inf
    seq[9]["b"][1] = np.nan
    seq[12]["W"][1, 0] = -np.inf
    return seq


def _params0(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s) for k, s in SHAPES.items()}


def _torch_run(kind: str, dtype: str, seq: list[dict[str, np.ndarray]], **scaler: Any) -> list[tuple]:
    """GradScaler on CPU torch over ``seq``: per step (scale, growth tracker, skipped so far, steps taken, params)."""
    torch = pytest.importorskip("torch")
    tp = {k: torch.nn.Parameter(torch.tensor(v, dtype=getattr(torch, dtype))) for k, v in _params0().items()}
    if kind == "adam":
        opt = torch.optim.Adam(list(tp.values()), lr=0.01)
    else:
        opt = torch.optim.SGD(list(tp.values()), lr=0.1, momentum=0.9)
    sc = torch.amp.GradScaler("cpu", **scaler)
    sc.scale(torch.tensor(1.0))  # GradScaler makes its scale lazily
    out, skipped = [], 0
    for k, g in enumerate(seq):
        before = sc.get_scale()
        for key, p in tp.items():
            p.grad = torch.tensor(g[key], dtype=p.dtype)
        if kind == "sgd_clip":
            sc.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(list(tp.values()), 1.0)
        sc.step(opt)
        sc.update()
        skipped += sc.get_scale() < before  # the scale only shrinks on a skipped step
        host = {key: p.detach().numpy().copy() for key, p in tp.items()}
        out.append((sc.get_scale(), int(sc._growth_tracker.item()), skipped, k + 1 - skipped, host))
    return out


def _run(tb: Any, opt: DynamicLossScale, dtype: str, seq: list[dict[str, np.ndarray]], state: Any = None) -> list:
    params = {k: tb.asarray(v, dtype=dtype) for k, v in _params0().items()}
    state = opt.init(params) if state is None else state(opt.init(params), params)
    out = []
    for g in seq:
        params, state = opt.step(params, {k: tb.asarray(v, dtype=dtype) for k, v in g.items()}, state)
        host = {k: pnn.to_numpy(v) for k, v in params.items()}
        out.append((float(state.scale), int(state.growth_tracker), int(state.skipped), int(state.count), host, state))
    return out


@pytest.mark.parametrize("kind", list(INNER))
@pytest.mark.parametrize("scaler", [
    {"init_scale": 8.0, "growth_interval": 3},
    {"init_scale": 2.0**100, "growth_factor": 3.0, "backoff_factor": 0.3, "growth_interval": 2},  # rounded to float32
    {"init_scale": 2.0**126, "growth_interval": 2},  # growing past float32's range keeps the scale
], ids=["powers_of_two", "odd_factors", "at_float32_max"])
def test_matches_torch_grad_scaler_step_for_step(tb: Any, kind: str, scaler: dict[str, Any]) -> None:
    seq = _grads_sequence()
    for dtype in tb.dtypes:
        want = _torch_run(kind, dtype, seq, **scaler)
        got = _run(tb, DynamicLossScale(INNER[kind](), **scaler), dtype, seq)
        for step, (w, g) in enumerate(zip(want, got, strict=True)):
            assert g[:4] == w[:4], f"{dtype} step {step}: (scale, tracker, skipped, count) {g[:4]} != torch's {w[:4]}"
            for key in SHAPES:  # torch's SGD fuses lr * g into the add, and clips with its own sum order
                tol = {"rtol": 1e-6, "atol": 1e-6} if dtype == "float32" else {"rtol": 1e-13, "atol": 1e-13}
                np.testing.assert_allclose(g[4][key], w[4][key], **tol, err_msg=f"{dtype} step {step} {key}")
    assert got[-1][2] == 4 and got[-1][3] == 12  # four skips, twelve steps taken


@pytest.mark.parametrize("factors", [(2.0, 0.5), (3.0, 0.3)], ids=["powers_of_two", "odd_factors"])
def test_state_of_0d_arrays_takes_the_traced_path_with_the_same_results(tb: Any, factors: tuple) -> None:
    """0-d arrays in the state choose with ``where`` (as under jit): the same numbers as the Python branch."""
    if factors[1] == 0.3 and "float64" not in tb.dtypes:
        pytest.skip("without float64 the scale is multiplied in float32: torch's numbers only for factors "
                    "that float32 holds exactly (documented)")
    seq = _grads_sequence()
    opt = DynamicLossScale(pnn.optim.Adam(0.01), init_scale=2.0**100, growth_factor=factors[0],
                           backoff_factor=factors[1], growth_interval=2)
    xp = tb.be.xp

    def as_arrays(state: LossScaleState, params: Any) -> LossScaleState:
        dev = params["W"].device
        return state._replace(
            scale=xp.asarray(state.scale, dtype=xp.float32, device=dev),
            growth_tracker=xp.asarray(0, dtype=xp.int32, device=dev), skipped=xp.asarray(0, dtype=xp.int32, device=dev),
        )

    eager = _run(tb, opt, tb.float, seq)
    arrays = _run(tb, opt, tb.float, seq, state=as_arrays)
    for step, (e, a) in enumerate(zip(eager, arrays, strict=True)):
        assert a[:4] == e[:4], f"step {step}"
        for key in SHAPES:
            np.testing.assert_array_equal(a[4][key], e[4][key])
    last = arrays[-1][5]
    assert last.scale.dtype == xp.float32 and last.growth_tracker.dtype == xp.int32  # each field keeps its dtype
    assert last.scale.device == tb.be.device and last.skipped.device == tb.be.device


def test_a_skipped_step_changes_nothing_but_the_scale(tb: Any) -> None:
    opt = DynamicLossScale(pnn.optim.Adam(0.01), init_scale=1024.0, growth_interval=5)
    params = {k: tb.asarray(v, dtype=tb.float) for k, v in _params0().items()}
    state = opt.init(params)
    finite = {k: tb.asarray(np.ones(s), dtype=tb.float) for k, s in SHAPES.items()}
    params, state = opt.step(params, finite, state)
    bad = dict(finite, b=tb.asarray([1.0, np.nan], dtype=tb.float))
    new_params, new_state = opt.step(params, bad, state)
    for key in SHAPES:
        np.testing.assert_array_equal(pnn.to_numpy(new_params[key]), pnn.to_numpy(params[key]))
        np.testing.assert_array_equal(pnn.to_numpy(new_state.inner.mu[key]), pnn.to_numpy(state.inner.mu[key]))
    assert (new_state.count, new_state.scale, new_state.growth_tracker, new_state.skipped) == (1, 512.0, 0, 1)
    assert new_state.inner.count == 1 and state.growth_tracker == 1


def test_clipping_of_the_inner_optimizer_sees_unscaled_grads(tb: Any) -> None:
    scale = 2.0**12
    opt = DynamicLossScale(pnn.optim.SGD(1.0, clip_norm=1.0), init_scale=scale)
    params = {"w": tb.asarray([0.0, 0.0], dtype=tb.float)}
    small = {"w": tb.asarray(np.array([0.3, 0.4]) * scale, dtype=tb.float)}  # unscaled norm 0.5: not clipped
    new, _ = opt.step(params, small, opt.init(params))
    np.testing.assert_allclose(pnn.to_numpy(new["w"]), [-0.3, -0.4], rtol=1e-6)
    large = {"w": tb.asarray(np.array([3.0, 4.0]) * scale, dtype=tb.float)}  # unscaled norm 5: clipped to 1
    new, _ = opt.step(params, large, opt.init(params))
    np.testing.assert_allclose(pnn.to_numpy(new["w"]), [-0.6, -0.8], rtol=1e-5)


def test_float16_grads_are_unscaled_in_float32(tb: Any) -> None:
    if "float16" not in pnn.available_precisions(tb.be):
        pytest.skip(f"{tb.spec} has no float16")
    opt = DynamicLossScale(pnn.optim.SGD(1.0), init_scale=2.0**25)  # 2**-25 is 0 in float16
    params = {"w": tb.asarray([0.0], dtype="float16")}
    grads = {"w": tb.asarray([1.5 * 2.0**15], dtype="float16")}
    new, state = opt.step(params, grads, opt.init(params))
    assert pnn.to_numpy(new["w"]).dtype == np.float16
    np.testing.assert_array_equal(pnn.to_numpy(new["w"]), np.array([-1.5 * 2.0**-10], dtype=np.float16))
    assert state.skipped == 0


def test_count_lr_scale_and_learning_rate_forward_to_the_inner_optimizer(tb: Any) -> None:
    inner = pnn.optim.SGD(pnn.schedules.step_decay(1.0, every=1, factor=0.5))
    opt = DynamicLossScale(inner, init_scale=4.0)
    params = {"w": tb.asarray([1.0], dtype=tb.float)}
    state = opt.init(params)
    assert (state.count, state.lr_scale, state.scale, state.growth_tracker, state.skipped) == (0, 1.0, 4.0, 0, 0)
    assert opt.learning_rate(state) == 1.0
    params, state = opt.step(params, {"w": tb.asarray([4.0], dtype=tb.float)}, state)
    assert state.count == 1 and opt.learning_rate(state) == 0.5
    params, state = opt.step(params, {"w": tb.asarray([np.inf], dtype=tb.float)}, state)
    assert state.count == 1 and opt.learning_rate(state) == 0.5  # a skipped step does not count
    state = state._replace(inner=state.inner._replace(lr_scale=0.1))  # what a training loop's reduce_lr does
    assert state.lr_scale == 0.1 and opt.learning_rate(state) == pytest.approx(0.05)


def test_equal_settings_compare_equal_and_repr_names_them() -> None:
    a = DynamicLossScale(pnn.optim.Adam(0.1), growth_interval=10)
    assert a == DynamicLossScale(pnn.optim.Adam(0.1), growth_interval=10) and hash(a) == hash(
        DynamicLossScale(pnn.optim.Adam(0.1), growth_interval=10))
    assert a != DynamicLossScale(pnn.optim.Adam(0.1), growth_interval=11)
    assert a != DynamicLossScale(pnn.optim.Adam(0.2), growth_interval=10)
    assert repr(a) == (
        "DynamicLossScale(Adam(lr=0.1, b1=0.9, b2=0.999, eps=1e-08, weight_decay=0.0), init_scale=65536.0, "
        "growth_factor=2.0, backoff_factor=0.5, growth_interval=10)"
    )


def test_state_round_trips_through_save_load_and_to_backend(tb: Any, tmp_path: Any) -> None:
    seq = _grads_sequence()[:8]
    opt = DynamicLossScale(pnn.optim.Adam(0.01), init_scale=8.0, growth_interval=2)
    params = {k: tb.asarray(v, dtype=tb.float) for k, v in _params0().items()}
    state = opt.init(params)
    for g in seq[:4]:  # one skip among them
        params, state = opt.step(params, {k: tb.asarray(v, dtype=tb.float) for k, v in g.items()}, state)
    pnn.save(tmp_path / "state.safetensors", state)
    loaded = pnn.load(tmp_path / "state.safetensors", backend=tb.be)
    moved = pnn.to_backend(state, tb.be)
    for other in (loaded, moved):
        assert type(other) is LossScaleState and type(other.inner) is type(state.inner)
        assert (other.scale, other.growth_tracker, other.skipped, other.count) == (
            state.scale, state.growth_tracker, state.skipped, state.count)
        p1, s1 = params, state
        p2, s2 = params, other
        for g in seq[4:]:
            grads = {k: tb.asarray(v, dtype=tb.float) for k, v in g.items()}
            p1, s1 = opt.step(p1, grads, s1)
            p2, s2 = opt.step(p2, grads, s2)
        for key in SHAPES:
            np.testing.assert_array_equal(pnn.to_numpy(p2[key]), pnn.to_numpy(p1[key]))
        assert (s2.scale, s2.skipped) == (s1.scale, s1.skipped)


def test_under_jax_jit_and_scan_the_same_as_eager(tb: Any) -> None:
    if tb.be.name != "jax":
        pytest.skip("jax.jit")
    import jax
    import jax.numpy as jnp

    seq = _grads_sequence()
    opt = DynamicLossScale(pnn.optim.SGD(0.1, momentum=0.9, clip_norm=1.0), init_scale=2.0**100, growth_factor=3.0,
                           backoff_factor=0.3, growth_interval=2)
    eager = _run(tb, opt, "float32", seq)
    params = {k: tb.asarray(v, dtype="float32") for k, v in _params0().items()}
    step = jax.jit(opt.step)
    p, s = params, opt.init(params)
    for e, g in zip(eager, seq, strict=True):
        p, s = step(p, {k: tb.asarray(v, dtype="float32") for k, v in g.items()}, s)
        assert (float(s.scale), int(s.growth_tracker), int(s.skipped), int(s.count)) == e[:4]
        for key in SHAPES:
            np.testing.assert_array_equal(np.asarray(p[key]), e[4][key])
    stacked = {k: jnp.stack([tb.asarray(g[k], dtype="float32") for g in seq]) for k in SHAPES}
    (p, s), _ = jax.lax.scan(lambda c, g: (opt.step(c[0], g, c[1]), None),
                             (params, jax.device_put(opt.init(params))), stacked)
    assert (float(s.scale), int(s.skipped), int(s.count)) == (eager[-1][0], eager[-1][2], eager[-1][3])
    for key in SHAPES:
        np.testing.assert_array_equal(np.asarray(p[key]), eager[-1][4][key])


@pytest.mark.parametrize("kwargs, match", [
    ({"init_scale": 0.0}, "init_scale must be a finite number > 0"),
    ({"init_scale": float("inf")}, "init_scale must be a finite number > 0"),
    ({"init_scale": 1e39}, "init_scale=1e\\+39 is 0 or infinite in float32"),
    ({"growth_factor": 1.0}, "growth_factor must be a finite number > 1"),
    ({"backoff_factor": 1.0}, r"backoff_factor must be a finite number in \(0.0, 1.0\)"),
    ({"backoff_factor": 0.0}, r"backoff_factor must be a finite number in \(0.0, 1.0\)"),
    ({"growth_interval": 0}, "growth_interval must be >= 1"),
])
def test_bad_settings_are_named(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=f"DynamicLossScale: {match}"):
        DynamicLossScale(pnn.optim.SGD(), **kwargs)


def test_wrapping_what_is_not_an_optimizer_or_stepping_a_foreign_state_raises(tb: Any) -> None:
    with pytest.raises(TypeError, match="growth_interval must be an int"):
        DynamicLossScale(pnn.optim.SGD(), growth_interval=1.5)
    for bad in ("adam", pnn.optim.Adam, object()):
        with pytest.raises(TypeError, match="DynamicLossScale: optimizer must be an optimizer instance"):
            DynamicLossScale(bad)
    with pytest.raises(TypeError, match="already a DynamicLossScale"):
        DynamicLossScale(DynamicLossScale(pnn.optim.SGD()))
    opt = DynamicLossScale(pnn.optim.Adam())
    params = {"w": tb.asarray([1.0], dtype=tb.float)}
    foreign = pnn.optim.Adam().init(params)
    with pytest.raises(TypeError, match="DynamicLossScale.step: state is a AdamState, not the LossScaleState"):
        opt.step(params, {"w": tb.asarray([1.0], dtype=tb.float)}, foreign)
    with pytest.raises(TypeError, match="DynamicLossScale.learning_rate: state is a AdamState"):
        opt.learning_rate(foreign)
    with pytest.raises(TypeError, match="state.scale must be a Python number or a 0-d array"):
        opt.step(params, {"w": tb.asarray([1.0], dtype=tb.float)}, opt.init(params)._replace(scale="big"))
