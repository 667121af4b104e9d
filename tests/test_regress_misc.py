"""Regression tests, one (or one group) per fixed defect, named after the defect.

Each runs on the backend chosen in conftest.py (``tb``) where it applies.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn import losses, optim
from portable_nn.__main__ import main

from ._support import host

# --------------------------------------------------------------------------- helpers


def snapshot(params: Any) -> list[np.ndarray]:
    return [host(leaf) for leaf in pnn.tree_leaves(params)]


def assert_unchanged(params: Any, before: list[np.ndarray]) -> None:
    after = pnn.tree_leaves(params)
    assert len(after) == len(before)
    for a, b in zip(after, before, strict=True):
        assert pnn.to_numpy(a).dtype == b.dtype
        np.testing.assert_array_equal(pnn.to_numpy(a), b)


def other_backend(tb: Any) -> pnn.Backend:
    """An installed backend of another array library than tb's: NumPy, or for NumPy torch/jax/array_api_strict."""
    if tb.be.name != "numpy":
        return pnn.get_backend("numpy")
    for name in ("torch", "array_api_strict", "jax"):
        if name in pnn.available_backends():
            return pnn.get_backend(name)
    pytest.skip("no backend other than NumPy is installed")


# --------------------------------------------------------------------------- 1. set_backend process-wide


def test_set_backend_is_process_wide_and_seen_by_new_threads(tb: Any) -> None:
    target = tb.be if tb.be.name != "numpy" else other_backend(tb)
    before = pnn.get_backend()
    seen: dict[str, Any] = {}
    go = threading.Event()

    def read_later() -> None:  # a thread started before set_backend, reading after it
        go.wait(10)
        seen["running thread"] = pnn.get_backend()

    running = threading.Thread(target=read_later)
    running.start()
    try:
        pnn.set_backend(target)
        go.set()
        running.join()
        fresh = threading.Thread(target=lambda: seen.update({"new thread": pnn.get_backend()}))
        fresh.start()
        fresh.join()
        other = pnn.get_backend("numpy") if target.name != "numpy" else tb.be
        with pnn.use_backend(other):  # the per-context override wins inside its block...
            seen["use_backend block"] = pnn.get_backend()
            pnn.set_backend(target)  # ...even over a set_backend made inside it
            seen["block after set_backend"] = pnn.get_backend()
            inner = threading.Thread(target=lambda: seen.update({"thread in block": pnn.get_backend()}))
            inner.start()
            inner.join()
        seen["after block"] = pnn.get_backend()
    finally:
        go.set()
        pnn.set_backend(before)
    assert pnn.get_backend() == before
    assert seen == {
        "running thread": target,
        "new thread": target,
        "use_backend block": other,
        "block after set_backend": other,
        "thread in block": target,
        "after block": target,
    }


# --------------------------------------------------------------------------- 2. gradcheck rtol/eps 0.0


def _gradcheck_setup(tb: Any) -> tuple[pnn.Layer, Any, Any, Any]:
    model = pnn.Sequential(pnn.Linear(3, 2), pnn.Tanh())
    params = tb.init(model, seed=1)
    rng = np.random.default_rng(0)
    X = tb.asarray(rng.standard_normal((4, 3)), tb.float)
    T = tb.asarray(rng.standard_normal((4, 2)), tb.float)
    return model, params, X, T


def test_gradcheck_rtol_zero_is_used_not_replaced_by_the_default(tb: Any) -> None:
    model, params, X, T = _gradcheck_setup(tb)
    kw = {"loss": losses.mean_squared_error, "T": T}
    pnn.gradcheck(model, params, X, **kw)  # passes with the defaults
    # rtol=0.0 and atol=0.0 leave no slack: finite differences of tanh are never exact
    with pytest.raises(pnn.GradientCheckError, match=r"rtol=0\.0, atol=0\.0"):
        pnn.gradcheck(model, params, X, rtol=0.0, atol=0.0, **kw)


@pytest.mark.parametrize(
    "kwargs, name", [({"eps": 0.0}, "eps"), ({"eps": -1e-6}, "eps"), ({"rtol": -1.0}, "rtol")]
)
def test_gradcheck_eps_zero_is_used_not_replaced_by_the_default(
    tb: Any, kwargs: dict[str, float], name: str
) -> None:
    model, params, X, T = _gradcheck_setup(tb)
    with pytest.raises(ValueError, match=rf"gradcheck: {name} must be a finite number"):
        pnn.gradcheck(model, params, X, loss=losses.mean_squared_error, T=T, **kwargs)


# --------------------------------------------------------------------------- 3. compare exit codes


@pytest.fixture
def no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any training run fail the test: the errors below must come before any work."""
    import portable_nn.tools.compare

    def ran(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("run_comparison ran")

    monkeypatch.setattr(portable_nn.tools.compare, "run_comparison", ran)


@pytest.mark.parametrize("backends", ["nmupy", "numpy,nmupy", "nmupy:cuda", "torch,jaxx:gpu"])
def test_compare_unknown_backend_exits_2_before_any_work(
    backends: str, no_run: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--backends", backends, "--steps", "2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    names = [s.partition(":")[0] for s in backends.split(",")]
    bad = [n for n in names if n not in ("numpy", "cupy", "torch", "jax", "array_api_strict")]
    assert f"unknown backend {bad[0]!r}" in err
    assert "numpy, cupy, torch, jax, array_api_strict" in err


def test_compare_known_but_unavailable_backend_stays_missing_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.json"
    argv = ["compare", "--backends", "numpy,numpy:gpu", "--steps", "2", "--repeats", "1", "--warmup", "0"]
    assert main([*argv, "--json", str(out)]) == 0
    assert "missing numpy:gpu:" in capsys.readouterr().out
    assert "numpy:gpu" in json.loads(out.read_text())["missing"]


def test_compare_run_comparison_rejects_unknown_backend_before_any_work() -> None:
    from portable_nn.tools.compare import run_comparison

    with pytest.raises(pnn.BackendError, match=r"unknown backend 'nmupy'.*numpy, cupy, torch"):
        run_comparison(["numpy", "nmupy"], steps=2, repeats=1, warmup=0, progress=False)


def _unwritable(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    if kind == "folder":
        (tmp_path / "out").mkdir()
        return tmp_path / "out"
    if kind == "under-a-file":
        (tmp_path / "file.txt").write_text("keep")
        return tmp_path / "file.txt" / "out"
    if kind == "missing-folder":
        return tmp_path / "nope" / "out"
    if os.geteuid() == 0:  # root may write anyway: answer os.access from the permission bits, as for a user
        real = os.access
        monkeypatch.setattr(
            os, "access", lambda p, mode: real(p, mode) and (not mode & os.W_OK or bool(os.stat(p).st_mode & 0o200))
        )
    if kind == "read-only-file":
        (tmp_path / "out").write_text("keep")
        (tmp_path / "out").chmod(0o444)
        return tmp_path / "out"
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    return tmp_path / "ro" / "out"


@pytest.mark.parametrize("option", ["--json", "--plot"])
@pytest.mark.parametrize("kind", ["folder", "under-a-file", "missing-folder", "read-only-file", "read-only-folder"])
def test_compare_unwritable_output_path_exits_2_before_any_work(
    tmp_path: Path,
    option: str,
    kind: str,
    no_run: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _unwritable(tmp_path, kind, monkeypatch)
    good = tmp_path / "good.json"  # a writable --json next to a bad --plot: nothing is written either
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    argv = ["compare", "--backends", "numpy", "--steps", "2", option, str(path)]
    if option == "--plot":
        argv += ["--json", str(good)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{option} {path}" in err
    assert any(w in err for w in ("is a folder", "is not a folder", "does not exist", "not writable"))
    assert sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before
    assert not good.exists()


# --------------------------------------------------------------------------- 4. compare --repeats 1 spread


def test_compare_one_repeat_spread_is_na_not_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.json"
    argv = ["compare", "--backends", "numpy", "--steps", "2", "--warmup", "0", "--json", str(out)]
    assert main([*argv, "--repeats", "1"]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("numpy "))
    assert "n/a" in row.split() and "±" not in row
    timing = json.loads(out.read_text())["backends"]["numpy"]["timing"]
    assert timing["repeats"] == 1 and timing["spread_iqr_rel"] is None
    assert main([*argv, "--repeats", "3"]) == 0  # measured with >= 2 repeats
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("numpy "))
    assert "n/a" not in row and "±" in row
    assert isinstance(json.loads(out.read_text())["backends"]["numpy"]["timing"]["spread_iqr_rel"], float)


# --------------------------------------------------------------------------- 5. empty batches


def _empty_call(tb: Any, name: str) -> tuple[Callable[[], Any], tuple[int, ...]]:
    if name == "softmax_cross_entropy":
        Y = tb.asarray(np.zeros((0, 3)), tb.float)
        labels = tb.asarray(np.zeros(0, dtype=np.int64), "int64")
        return lambda: losses.softmax_cross_entropy(Y, labels), (0, 3)
    Y = tb.asarray(np.zeros((0, 2)), tb.float)
    T = tb.asarray(np.zeros((0, 2)), tb.float)
    return lambda: getattr(losses, name)(Y, T), (0, 2)


@pytest.mark.parametrize(
    "name",
    ["sum_squared_error", "mean_squared_error", "binary_cross_entropy_with_logits", "softmax_cross_entropy"],
)
def test_empty_batch_raises_valueerror_for_every_loss(tb: Any, name: str) -> None:
    call, shape = _empty_call(tb, name)
    with pytest.raises(ValueError) as info:
        call()
    msg = str(info.value)
    assert msg.startswith(f"{name}:") and "empty" in msg and str(shape) in msg, msg


def test_empty_batch_zero_outputs_raises_too(tb: Any) -> None:
    Y = tb.asarray(np.zeros((4, 0)), tb.float)
    with pytest.raises(ValueError, match=r"mean_squared_error: empty batch.*\(4, 0\)"):
        losses.mean_squared_error(Y, Y)


# --------------------------------------------------------------------------- 6. NumPy scalar hyperparameters

# (make, attribute, a valid float, a valid int)
_HYPER: list[tuple[str, Callable[[Any], Any], str, float, int]] = [
    ("SGD-lr", lambda v: optim.SGD(v), "lr", 0.01, 1),
    ("SGD-momentum", lambda v: optim.SGD(0.1, momentum=v), "momentum", 0.5, 0),
    ("SGD-weight_decay", lambda v: optim.SGD(0.1, weight_decay=v), "weight_decay", 0.5, 1),
    ("Adam-lr", lambda v: optim.Adam(v), "lr", 0.01, 1),
    ("Adam-b1", lambda v: optim.Adam(b1=v), "b1", 0.5, 0),
    ("Adam-eps", lambda v: optim.Adam(eps=v), "eps", 1e-6, 1),
    ("AdamW-lr", lambda v: optim.AdamW(v), "lr", 0.01, 1),
    ("LeakyReLU-alpha", lambda v: pnn.LeakyReLU(v), "alpha", 0.25, 1),
    ("Dropout-rate", lambda v: pnn.Dropout(v), "rate", 0.25, 0),
    ("LayerNorm-eps", lambda v: pnn.LayerNorm(3, eps=v), "eps", 1e-5, 1),
]
_HYPER_IDS = [row[0] for row in _HYPER]


@pytest.mark.parametrize("id, make, attr, fval, ival", _HYPER, ids=_HYPER_IDS)
@pytest.mark.parametrize("scalar", [float, int, np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8])
def test_numpy_scalar_hyperparameters_are_accepted(
    id: str, make: Callable[[Any], Any], attr: str, fval: float, ival: int, scalar: type
) -> None:
    value = scalar(ival) if issubclass(scalar, (int, np.integer)) else scalar(fval)
    obj = make(value)
    got = getattr(obj, attr)
    assert type(got) is float and got == float(value)


@pytest.mark.parametrize("id, make, attr, fval, ival", _HYPER, ids=_HYPER_IDS)
@pytest.mark.parametrize(
    "bad", [True, np.bool_(False), complex(0.1, 0.0), np.complex64(0.1), "0.1", np.array([0.1]), np.nan]
)
def test_numpy_scalar_hyperparameters_bool_complex_still_rejected(
    id: str, make: Callable[[Any], Any], attr: str, fval: float, ival: int, bad: Any
) -> None:
    with pytest.raises(ValueError) as info:
        make(bad)
    msg = str(info.value)
    assert msg.startswith(id.split("-")[0] + ":") and attr in msg and repr(bad) in msg, msg


def test_numpy_scalar_sizes_and_uses_end_to_end(tb: Any) -> None:
    model = pnn.Sequential(
        pnn.Linear(np.int64(3), np.int32(4)), pnn.LeakyReLU(np.float32(0.1)), pnn.LayerNorm(np.int64(4))
    )
    assert repr(model) == "Sequential(Linear(3, 4), LeakyReLU(alpha=0.10000000149011612), LayerNorm(4))"
    params = tb.init(model)
    X = tb.asarray(np.ones((2, 3)), tb.float)
    Y, backprop = model.apply(params, X)
    _, grads = backprop(Y)
    opt = optim.SGD(np.float32(0.01), momentum=np.float64(0.9))
    new, _ = opt.step(params, grads, opt.init(params))
    assert all(a.dtype == b.dtype for a, b in zip(pnn.tree_leaves(new), pnn.tree_leaves(params), strict=True))


# --------------------------------------------------------------------------- 7. optimizer state mismatch

_OPTS = [("Adam", lambda: optim.Adam(0.01), "mu"), ("SGD", lambda: optim.SGD(0.1, momentum=0.9), "velocity")]
_MODEL = lambda: pnn.Sequential(pnn.Linear(3, 2), pnn.ReLU(), pnn.Linear(2, 1))  # noqa: E731


def _step_and_update(opt: Any, params: Any, state: Any) -> list[Callable[[], Any]]:
    grads = pnn.tree_map(lambda p: p * 0.5 + 1.0, params)
    return [lambda: opt.step(params, grads, state), lambda: opt.update(grads, state, params)]


def _expect_state_error(
    opt_name: str, field: str, calls: list[Callable[[], Any]], exc: type[Exception], facts: tuple[str, ...], params: Any
) -> None:
    before = snapshot(params)
    for method, call in zip(("step", "update"), calls, strict=True):
        with pytest.raises(exc) as info:
            call()
        msg = str(info.value)
        for fact in (f"{opt_name}.{method}", f"state.{field}", "'0.W'", "opt.init(params)", "to_backend", *facts):
            assert fact in msg, f"message lacks {fact!r}: {msg!r}"
        assert_unchanged(params, before)


@pytest.mark.parametrize("opt_name, make, field", _OPTS, ids=[o[0] for o in _OPTS])
def test_optimizer_state_of_another_dtype_raises(tb: Any, opt_name: str, make: Any, field: str) -> None:
    if "float64" not in tb.dtypes:
        pytest.skip(f"{tb.spec} has no float64")
    params = tb.init(_MODEL(), dtype="float32")
    opt = make()
    state = opt.init(tb.init(_MODEL(), dtype="float64"))
    calls = _step_and_update(opt, params, state)
    _expect_state_error(opt_name, field, calls, TypeError, ("float64", "float32"), params)


@pytest.mark.parametrize("opt_name, make, field", _OPTS, ids=[o[0] for o in _OPTS])
def test_optimizer_state_of_another_library_raises(tb: Any, opt_name: str, make: Any, field: str) -> None:
    other = other_backend(tb)
    params = tb.init(_MODEL(), dtype="float32")
    opt = make()
    state = opt.init(_MODEL().init(0, backend=other, dtype="float32"))
    calls = _step_and_update(opt, params, state)
    p_kind = type(pnn.tree_leaves(params)[0])
    s_kind = type([a for a in pnn.tree_leaves(state) if hasattr(a, "shape")][-1])  # an array leaf, not lr_scale
    facts = (p_kind.__name__, s_kind.__name__, "another array library")
    _expect_state_error(opt_name, field, calls, TypeError, facts, params)


@pytest.mark.parametrize("opt_name, make, field", _OPTS, ids=[o[0] for o in _OPTS])
def test_optimizer_state_on_another_device_raises(tb: Any, opt_name: str, make: Any, field: str) -> None:
    if tb.be.name != "array_api_strict":
        pytest.skip("array_api_strict's devices stand in for two devices of one library")
    here = str(tb.be.device._device)
    there = "device1" if here != "device1" else "CPU_DEVICE"
    params = tb.init(_MODEL(), dtype="float32")
    opt = make()
    state = opt.init(_MODEL().init(0, backend=f"array_api_strict:{there}", dtype="float32"))
    calls = _step_and_update(opt, params, state)
    _expect_state_error(opt_name, field, calls, ValueError, ("device", here, there), params)


@pytest.mark.parametrize("opt_name, make, field", _OPTS, ids=[o[0] for o in _OPTS])
def test_optimizer_state_matching_params_still_steps(tb: Any, opt_name: str, make: Any, field: str) -> None:
    params = tb.init(_MODEL())
    opt = make()
    state = opt.init(params)
    grads = pnn.tree_map(lambda p: p * 0.5 + 1.0, params)
    new, state = opt.step(params, grads, state)
    new, state = opt.step(new, grads, state)
    for a, b in zip(pnn.tree_leaves(new), pnn.tree_leaves(params), strict=True):
        assert a.dtype == b.dtype and type(a) is type(b)


# --------------------------------------------------------------------------- 8. declared loss reduction


def test_losses_declare_their_reduction() -> None:
    assert losses.sum_squared_error.reduction == "sum"  # type: ignore[attr-defined]
    for name in ("mean_squared_error", "binary_cross_entropy_with_logits", "softmax_cross_entropy"):
        assert getattr(losses, name).reduction == "mean", name
    assert losses.reduction_of(losses.sum_squared_error) == "sum"
    assert losses.reduction_of(lambda Y, T: (Y, T)) == "mean"  # undeclared user loss: "mean"

    @losses.reduces("sum")
    def my_loss(Y: Any, T: Any) -> Any:
        return Y, T

    assert my_loss.reduction == "sum" and losses.reduction_of(my_loss) == "sum"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="reduces: reduction must be 'mean' or 'sum', got 'max'"):
        losses.reduces("max")
