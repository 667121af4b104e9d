"""Mixed precision: fit/compile_step/predict/evaluate with precision="bfloat16" | "float16" over float32 master
params, DynamicLossScale inside fit, the layers' float32 ops, and clear errors where a backend lacks a precision."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.training import StepSpec, forward_backward

SCE = pnn.losses.softmax_cross_entropy
PRECISIONS = ("bfloat16", "float16")


def _have(tb: Any, precision: str) -> bool:
    return precision in pnn.available_precisions(tb.be)


def _needs(tb: Any, precision: str) -> None:
    if not _have(tb, precision):
        pytest.skip(f"{tb.spec} has no {precision} (available_precisions: {pnn.available_precisions(tb.be)})")


def _blobs(n: int = 96, d: int = 6, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    return (centers[y] + rng.standard_normal((n, d))).astype("float32"), y


def _model() -> pnn.Sequential:
    return pnn.Sequential(pnn.Linear(6, 16), pnn.GELU(), pnn.LayerNorm(16), pnn.Linear(16, 3))


def _leaves(tree: Any) -> list[np.ndarray]:
    return [np.asarray(pnn.to_numpy(a), dtype=np.float64) for a in pnn.tree_leaves(tree)]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_fit_keeps_float32_master_params_and_learns(tb: Any, precision: str) -> None:
    _needs(tb, precision)
    X, y = _blobs()
    model = _model()
    params = tb.init(model, dtype="float32")
    kw: dict[str, Any] = dict(loss=SCE, optimizer=pnn.optim.Adam(1e-2), epochs=6, batch_size=16, progress=False)
    out, hist = pnn.fit(model, params, X, y, precision=precision, validation_data=(X[:32], y[:32]), **kw)
    ref, ref_hist = pnn.fit(model, params, X, y, validation_data=(X[:32], y[:32]), **kw)
    dtypes = {str(a.dtype) for a in pnn.tree_leaves(out)}
    assert len(dtypes) == 1 and dtypes.pop().endswith("float32")  # the master weights
    assert hist["accuracy"][-1] >= ref_hist["accuracy"][-1] - 0.05
    assert hist["loss"][-1] < hist["loss"][0]
    if precision == "float16":  # wrapped in DynamicLossScale by default: its scale and skips are recorded
        assert len(hist["loss_scale"]) == len(hist["skipped_steps"]) == 6
        assert all(s > 0 for s in hist["loss_scale"])
    else:
        assert "loss_scale" not in hist
    Y = pnn.predict(model, out, X, precision=precision)
    assert str(Y.dtype).endswith("float32") and tuple(Y.shape) == (96, 3)
    loss, acc = pnn.evaluate(model, out, X[:32], y[:32], loss=SCE, precision=precision)
    assert loss == pytest.approx(hist["val_loss"][-1], rel=1e-6) and acc == hist["val_accuracy"][-1]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_step_computes_in_the_compute_dtype_and_returns_master_grads(tb: Any, precision: str) -> None:
    """forward_backward with a precision equals the same model run on params and X cast by hand, with the loss
    on the output cast back to float32 and the grads cast back to float32."""
    _needs(tb, precision)
    X, y = _blobs(n=8)
    model = _model()
    params = tb.init(model, dtype="float32")
    xp = tb.be.xp
    Xd, yd = tb.asarray(X), tb.be.asarray(y)
    low = tb.be.dtype(precision)
    _, value, grads, _ = forward_backward(StepSpec(model, SCE, None, precision=precision), params, Xd, yd)
    cast = pnn.tree_map(lambda a: xp.astype(a, low), params)
    Y, backprop = model.apply(cast, xp.astype(Xd, low), train=True)
    v, dY = SCE(xp.astype(Y, xp.float32), yd)
    _, want = backprop(xp.astype(dY, low))
    assert float(value) == float(v)
    for g, w in zip(pnn.tree_leaves(grads), pnn.tree_leaves(want), strict=True):
        assert str(g.dtype).endswith("float32")
        np.testing.assert_array_equal(pnn.to_numpy(g), pnn.to_numpy(xp.astype(w, xp.float32)))


def test_unsupported_precisions_raise_before_any_step(tb: Any) -> None:
    X, y = _blobs(n=16)
    model = _model()
    params = tb.init(model, dtype="float32")
    kw: dict[str, Any] = dict(loss=SCE, optimizer=pnn.optim.SGD(0.1), epochs=1, progress=False)
    for precision in PRECISIONS:
        if _have(tb, precision):
            continue
        with pytest.raises(ValueError, match=f"cannot compute in {precision}.*available_precisions") as info:
            pnn.fit(model, params, X, y, precision=precision, **kw)
        assert tb.be.name in str(info.value)
        with pytest.raises(ValueError, match=f"cannot compute in {precision}"):
            pnn.predict(model, params, X, precision=precision)
    with pytest.raises(ValueError, match="precision must be None, 'bfloat16' or 'float16'"):
        pnn.fit(model, params, X, y, precision="float8", **kw)
    if "float16" in tb.dtypes or _have(tb, "float16"):
        half = pnn.tree_map(lambda a: tb.be.xp.astype(a, tb.be.dtype("float16")), params) if _have(tb, "float16") else None
        if half is not None:
            with pytest.raises(TypeError, match="float32 master weights.*dtype='float32'"):
                pnn.fit(model, half, X, y, precision="float16", **kw)


@pytest.mark.filterwarnings("ignore:overflow", "ignore:invalid")
def test_float16_steps_that_overflow_are_skipped_not_errors(tb: Any) -> None:
    """A huge initial scale makes the first steps' grads overflow in float16: those steps are skipped (params and
    the inner state unchanged), the scale backs off, training goes on; with scaling off it is a NonFiniteError."""
    _needs(tb, "float16")
    X, y = _blobs(n=32)
    model = _model()
    params = tb.init(model, dtype="float32")
    scaled = pnn.optim.DynamicLossScale(pnn.optim.SGD(0.05), init_scale=2.0**40)
    kw: dict[str, Any] = dict(loss=SCE, epochs=2, batch_size=8, progress=False, shuffle=False)
    out, hist = pnn.fit(model, params, X, y, optimizer=scaled, precision="float16", **kw)
    assert hist["skipped_steps"][0] >= 1 and hist["loss_scale"][0] < 2.0**40
    assert all(np.isfinite(a).all() for a in _leaves(out))
    # the skipped steps left the params alone: as many skips as SGD steps missing from the count
    step = pnn.compile_step(model, SCE, scaled, compile=False, precision="float16")
    p, s = params, scaled.init(params)
    p, s, _ = step(p, s, tb.asarray(X[:8]), tb.be.asarray(y[:8]))
    assert int(s.skipped) == 1 and int(s.count) == 0 and float(s.scale) == 2.0**39
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(p), _leaves(params), strict=True))
    if _have(tb, "bfloat16"):  # no loss scaling (bfloat16's default): a divergence is an error, as in float32
        with pytest.raises(pnn.NonFiniteError), np.errstate(all="ignore"):
            pnn.fit(model, params, X, y, optimizer=pnn.optim.SGD(1e30), precision="bfloat16", **kw)


def test_half_precision_layers_keep_their_statistics_in_float32(tb: Any) -> None:
    """LayerNorm, BatchNorm and Softmax on half X equal their float32 selves on the upcast X, cast once."""
    precision = next((p for p in PRECISIONS if _have(tb, p)), None)
    if precision is None:
        pytest.skip(f"{tb.spec} has no half precision")
    xp, low = tb.be.xp, tb.be.dtype(precision)
    X = tb.asarray(np.random.default_rng(0).standard_normal((5, 4, 3)).astype("float32"))
    for layer in (pnn.LayerNorm(3), pnn.Softmax(), pnn.BatchNorm(4)):
        assert layer.float32_ops
        params = tb.init(layer, dtype="float32")
        X16 = xp.astype(X, low)
        half = pnn.tree_map(lambda a: xp.astype(a, low), params.params if isinstance(params, pnn.Variables) else params)
        if isinstance(params, pnn.Variables):
            (Y16, _, _), (Y32, _, _) = (layer.apply_with_state(half, params.state, X16, train=True),
                                        layer.apply_with_state(params.params, params.state, xp.astype(X16, xp.float32),
                                                               train=True))
        else:
            Y16, _ = layer.apply(half, X16)
            Y32, _ = layer.apply(pnn.tree_map(lambda a: xp.astype(a, xp.float32), half), xp.astype(X16, xp.float32))
        assert Y16.dtype == low
        np.testing.assert_array_equal(pnn.to_numpy(xp.astype(Y16, xp.float32)),
                                      pnn.to_numpy(xp.astype(xp.astype(Y32, low), xp.float32)))


def test_digits_mlp_in_half_precision_reaches_float32_accuracy_within_1pp(tb: Any) -> None:
    """Issue #24's accuracy goal at CI size: bfloat16 (torch, JAX) and float16 (NumPy, torch)."""
    precisions = [p for p in PRECISIONS if _have(tb, p)]
    if not precisions or tb.spec not in ("numpy", "torch", "jax"):
        pytest.skip("run where the half precisions exist: numpy (float16), torch and jax")
    from sklearn.datasets import load_digits

    d = load_digits()
    X, y = (d.data / 16).astype("float32"), d.target
    model = pnn.Sequential(pnn.Linear(64, 64), pnn.ReLU(), pnn.Linear(64, 10))
    params = tb.init(model, dtype="float32")
    kw: dict[str, Any] = dict(loss=SCE, optimizer=pnn.optim.Adam(3e-3), epochs=8, batch_size=64, progress=False)
    _, ref = pnn.fit(model, params, X[:1400], y[:1400], validation_data=(X[1400:], y[1400:]), **kw)
    for precision in precisions:
        if tb.spec == "numpy" and precision == "bfloat16":
            continue
        _, hist = pnn.fit(model, params, X[:1400], y[:1400], validation_data=(X[1400:], y[1400:]),
                          precision=precision, **kw)
        assert hist["val_accuracy"][-1] >= ref["val_accuracy"][-1] - 0.01, (precision, hist, ref)


def test_jax_compiled_epochs_in_half_precision_equal_the_portable_steps(tb: Any) -> None:
    if tb.be.name != "jax":
        pytest.skip("JAX's compiled whole-epoch loop")
    X, y = _blobs(n=48)
    model = _model()
    params = tb.init(model, dtype="float32")
    for precision in PRECISIONS:
        kw: dict[str, Any] = dict(loss=SCE, optimizer=pnn.optim.Adam(1e-2), epochs=3, batch_size=16,
                                  progress=False, precision=precision)
        a, ha = pnn.fit(model, params, X, y, compile=None, **kw)
        b, hb = pnn.fit(model, params, X, y, compile=False, **kw)
        for x, z in zip(_leaves(a), _leaves(b), strict=True):
            np.testing.assert_allclose(x, z, rtol=2e-2, atol=2e-3)
        assert ha.get("skipped_steps") == hb.get("skipped_steps")


def test_compare_runs_in_a_precision_and_lists_backends_without_it(tb: Any) -> None:
    if tb.spec != "numpy":
        pytest.skip("the comparison runs NumPy as its reference: the numpy session")
    from portable_nn.tools.compare import run_comparison

    result = run_comparison(["numpy", "array_api_strict"], "seed", precision="float16", steps=5, repeats=1, warmup=0,
                            progress=False)
    (numpy,) = result.results
    assert numpy.dtype == "float16 (mixed)" and result.settings["precision"] == "float16"
    assert "cannot compute in float16" in result.missing["array_api_strict"]
    assert np.isfinite(numpy.run.losses).all()
    with pytest.raises(ValueError, match="precision needs float32 params"):
        run_comparison(["numpy"], "seed", precision="float16", dtype="float64", steps=1)


def test_the_gpt_in_bfloat16_ends_within_2_percent_of_its_float32_validation_loss(tb: Any) -> None:
    """Issue #24's GPT goal at CI size: a 2-block character GPT trained in bfloat16 (torch, JAX)."""
    _needs(tb, "bfloat16")
    from portable_nn.tools.problems import make_problem

    prob = make_problem("gpt", tb.be, dtype="float32")
    X = tb.be.xp.concat([b[0] for b in prob.batches[:3]], axis=0)
    Y = tb.be.xp.concat([b[1] for b in prob.batches[:3]], axis=0)
    Xv, Yv = prob.batches[3]
    losses = {}
    for precision in (None, "bfloat16"):
        params, _ = pnn.fit(prob.model, prob.params, X, Y, loss=SCE, optimizer=pnn.optim.Adam(3e-3), epochs=4,
                            batch_size=16, progress=False, precision=precision)
        losses[precision], _ = pnn.evaluate(prob.model, params, Xv, Yv, loss=SCE, precision=precision)
    assert abs(losses["bfloat16"] - losses[None]) <= 0.02 * losses[None], losses
