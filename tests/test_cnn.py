"""Convolutional layers on the backend under test (see conftest.py).

* backprop agrees with finite differences for Conv2D, MaxPool2D, AvgPool2D,
  GlobalAvgPool2D and Flatten (hypothesis-drawn shapes, kernels, strides, paddings);
* forward and backward agree with ``torch.nn.functional`` (torch autograd is the oracle);
* a small CNN trained with ``fit`` agrees with NumPy step by step;
* outputs keep the params' dtype and the input's namespace and device; nothing
  is written in place (under ``numpy-readonly`` every input is read-only);
* bad configurations and inputs raise clear errors; PyTorch Conv2d weights
  load as docs/guide/cnn.md shows.

Shapes are tiny and shared between tests (the suite runs once per backend,
and JAX compiles each op once per shape).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import portable_nn as pnn

from ._support import FAST, SHAPES, assert_same_kind, dtypes_under_test, host, seeds

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "cnn.md"
X_SHAPE = (2, 3, 7, 6)  # (batch, channels, height, width) of the fixed-shape tests


def spread(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 6 / 200 apart, shuffled: no max-pool window has two maxima within gradcheck's eps."""
    size = int(np.prod(shape))
    return rng.permutation(np.linspace(-3.0, 3.0, max(size, 2))[:size]).reshape(shape)


def with_random_bias(tb: Any, params: Any, rng: np.random.Generator, dtype: str) -> Any:
    """Params with a random bias (init's is zero, which would hide a bias used wrongly)."""
    if isinstance(params, dict) and "b" in params:
        return {**params, "b": tb.asarray(rng.standard_normal(tuple(params["b"].shape)), dtype)}
    return params


def rel_err(actual: Any, desired: np.ndarray) -> float:
    """``max |actual - desired| / max |desired|``: the error relative to the array's scale."""
    desired = np.asarray(desired, dtype=np.float64)
    return float(np.max(np.abs(host(actual) - desired)) / max(float(np.max(np.abs(desired))), 1e-300))


# ---------------------------------------------------------------- 1. gradcheck of every layer


@dataclass(frozen=True)
class Geometry:
    x_shape: tuple[int, int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: Any


@st.composite
def geometries(draw: Any) -> Geometry:
    x_shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(4, 7)), draw(st.integers(4, 7)))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.sampled_from([0, 1, (1, 0), "same"]))
    stride = (1, 1) if padding == "same" else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    return Geometry(x_shape, kernel, stride, padding)


WINDOW_LAYERS: dict[str, Callable[[Geometry], pnn.Layer]] = {
    "Conv2D": lambda g: pnn.Conv2D(g.x_shape[1], 2, g.kernel, stride=g.stride, padding=g.padding),
    "Conv2D(bias=False)": lambda g: pnn.Conv2D(
        g.x_shape[1], 2, g.kernel, stride=g.stride, padding=g.padding, bias=False
    ),
    "MaxPool2D": lambda g: pnn.MaxPool2D(g.kernel, g.stride),
    "AvgPool2D": lambda g: pnn.AvgPool2D(g.kernel, g.stride),
}
SHAPE_LAYERS: dict[str, Callable[[], pnn.Layer]] = {"GlobalAvgPool2D": pnn.GlobalAvgPool2D, "Flatten": pnn.Flatten}


def check_gradients(tb: Any, model: pnn.Layer, x_shape: tuple[int, ...], seed: int) -> None:
    """gradcheck in float64 where the device has it, else float32 (gradcheck's looser defaults).

    Also checks the kinds of Y, dX and the grads, and that no input is written.
    """
    rng = np.random.default_rng(seed)
    params = with_random_bias(tb, tb.init(model, seed=seed % 2**31), rng, tb.float)
    X = tb.asarray(spread(rng, x_shape), tb.float)
    check_kinds_and_no_writes(tb, model, params, X)
    T = tb.asarray(rng.standard_normal(tuple(model(params, X).shape)), tb.float)
    pnn.gradcheck(model, params, X, loss=pnn.losses.mean_squared_error, T=T, max_checks=16)


@pytest.mark.parametrize("case", list(WINDOW_LAYERS))
@settings(FAST, max_examples=3)  # each example is a gradcheck (and JAX compiles per shape): few
@SHAPES
@given(geometry=geometries(), seed=seeds)
def test_backprop_matches_finite_differences(tb: Any, case: str, geometry: Geometry, seed: int) -> None:
    check_gradients(tb, WINDOW_LAYERS[case](geometry), geometry.x_shape, seed)


@pytest.mark.parametrize("case", list(SHAPE_LAYERS))
@settings(FAST, max_examples=2)
@SHAPES
@given(geometry=geometries(), seed=seeds)
def test_shape_layers_backprop_matches_finite_differences(
    tb: Any, case: str, geometry: Geometry, seed: int
) -> None:
    check_gradients(tb, SHAPE_LAYERS[case](), geometry.x_shape, seed)


def small_cnn() -> pnn.Sequential:
    """(8, 1, 5, 5) -> (8, 2, 4, 4) -> (8, 2, 2, 2) -> (8, 3, 2, 2) -> (8, 3) -> (8, 3) logits."""
    return pnn.Sequential(
        pnn.Conv2D(1, 2, 2),
        pnn.ReLU(),
        pnn.MaxPool2D(2),
        pnn.Conv2D(2, 3, 2, padding="same"),
        pnn.ReLU(),
        pnn.GlobalAvgPool2D(),
        pnn.Linear(3, 3),
    )


# ---------------------------------------------------------------- 2. torch.nn.functional is the oracle

Oracle = Callable[[Any, Any, dict[str, Any]], Any]

TORCH_CASES: dict[str, tuple[Callable[[], pnn.Layer], Oracle]] = {
    "Conv2D k3 s2 p1": (
        lambda: pnn.Conv2D(3, 2, 3, stride=2, padding=1),
        lambda F, X, p: F.conv2d(X, p["W"], p["b"], stride=2, padding=1),
    ),
    "Conv2D k(2,3) s(2,1) p(1,0)": (
        lambda: pnn.Conv2D(3, 2, (2, 3), stride=(2, 1), padding=(1, 0)),
        lambda F, X, p: F.conv2d(X, p["W"], p["b"], stride=(2, 1), padding=(1, 0)),
    ),
    "Conv2D k(2,4) same": (
        lambda: pnn.Conv2D(3, 2, (2, 4), padding="same", bias=False),
        lambda F, X, p: F.conv2d(X, p["W"], padding="same"),
    ),
    "MaxPool2D(2)": (lambda: pnn.MaxPool2D(2), lambda F, X, p: F.max_pool2d(X, 2)),
    "MaxPool2D((2,3), stride=(1,2))": (
        lambda: pnn.MaxPool2D((2, 3), (1, 2)),
        lambda F, X, p: F.max_pool2d(X, (2, 3), (1, 2)),
    ),
    "AvgPool2D(2)": (lambda: pnn.AvgPool2D(2), lambda F, X, p: F.avg_pool2d(X, 2)),
    "AvgPool2D((2,3), stride=(1,2))": (
        lambda: pnn.AvgPool2D((2, 3), (1, 2)),
        lambda F, X, p: F.avg_pool2d(X, (2, 3), (1, 2)),
    ),
    "GlobalAvgPool2D": (
        pnn.GlobalAvgPool2D,
        lambda F, X, p: F.adaptive_avg_pool2d(X, 1).reshape(X.shape[0], X.shape[1]),
    ),
}


def compare_with_torch(
    tb: Any, layer: pnn.Layer, oracle: Oracle, X_host: np.ndarray, dtype: str, tol: float | None = None
) -> None:
    """Y, dX and the grads of ``layer`` on the backend equal torch's (float64 autograd on the same numbers).

    ``tol``: the largest error relative to each array's scale (default 1e-10 in float64, 1e-5 in float32).
    """
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    params = with_random_bias(tb, tb.init(layer, seed=2, dtype=dtype), rng, dtype)
    X = tb.asarray(X_host, dtype)
    Y, backprop = layer.apply(params, X)
    dY_host = rng.standard_normal(tuple(Y.shape))
    dX, grads = backprop(tb.asarray(dY_host, dtype))

    leaves = {k: torch.tensor(host(v).astype(np.float64), requires_grad=True) for k, v in params.items()}
    Xt = torch.tensor(host(X).astype(np.float64), requires_grad=True)
    Yt = oracle(torch.nn.functional, Xt, leaves)
    Yt.backward(torch.tensor(host(tb.asarray(dY_host, dtype)).astype(np.float64)))
    tol = tol if tol is not None else 1e-10 if dtype == "float64" else 1e-5
    assert rel_err(Y, pnn.to_numpy(Yt)) <= tol, f"{layer!r}: Y"
    assert rel_err(dX, pnn.to_numpy(Xt.grad)) <= tol, f"{layer!r}: dX"
    assert set(grads) == set(leaves)
    for key, leaf in leaves.items():
        assert rel_err(grads[key], pnn.to_numpy(leaf.grad)) <= tol, f"{layer!r}: grad {key}"


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's own note
@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_matches_torch_forward_and_backward(tb: Any, case: str) -> None:
    make, oracle = TORCH_CASES[case]
    compare_with_torch(tb, make(), oracle, np.random.default_rng(0).standard_normal(X_SHAPE), tb.float)


@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 1)])
def test_max_pool_ties_match_torch(tb: Any, kernel: int, stride: int) -> None:
    # small integers: most windows hold several maxima (overlapping ones with stride 1)
    X_host = np.random.default_rng(3).integers(0, 3, X_SHAPE).astype(np.float64)
    oracle: Oracle = lambda F, X, p: F.max_pool2d(X, kernel, stride)  # noqa: E731
    compare_with_torch(tb, pnn.MaxPool2D(kernel, stride), oracle, X_host, tb.float)


def test_max_pool_gradient_goes_to_the_first_maximum_in_row_major_order(tb: Any) -> None:
    # windows (2x2): all equal; maxima at (0, 1) and (1, 0); maxima at (1, 0) and (1, 1)
    X_host = np.array([[[[1.0, 1.0, 0.0, 5.0, 0.0, 0.0], [1.0, 1.0, 5.0, 0.0, 7.0, 7.0]]]])
    Y, backprop = pnn.MaxPool2D(2).apply({}, tb.asarray(X_host, tb.float))
    dX, _ = backprop(tb.asarray([[[[10.0, 20.0, 30.0]]]], tb.float))
    np.testing.assert_array_equal(host(Y), [[[[1.0, 5.0, 7.0]]]])
    np.testing.assert_array_equal(host(dX), [[[[10.0, 0.0, 0.0, 20.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 30.0, 0.0]]]])


# ---------------------------------------------------------------- 3. a small CNN trained with fit


def test_small_cnn_fit_agrees_with_numpy_step_by_step(tb: Any) -> None:
    rng = np.random.default_rng(11)
    X_host, labels = rng.standard_normal((8, 1, 5, 5)), rng.integers(0, 3, 8)
    model, numpy_be = small_cnn(), pnn.get_backend("numpy")
    for dtype in dtypes_under_test(tb):
        tol = 1e-12 if dtype == "float64" else 1e-5
        ref = model.init(seed=0, backend=numpy_be, dtype=dtype)
        params = tb.init(model, seed=0, dtype=dtype)
        X, y = tb.asarray(X_host, dtype), tb.asarray(labels)
        losses = []
        for step in range(3):  # one full-batch step per fit; plain SGD keeps no state between fits
            kwargs: dict[str, Any] = dict(
                loss=pnn.losses.softmax_cross_entropy,
                optimizer=pnn.optim.SGD(lr=0.5),
                epochs=1,
                batch_size=8,
                progress=False,
            )
            ref, ref_history = pnn.fit(model, ref, X_host, labels, **kwargs)
            params, history = pnn.fit(model, params, X, y, **kwargs)
            losses.append(ref_history["loss"][0])
            assert history["loss"][0] == pytest.approx(losses[-1], rel=tol), f"{dtype} step {step}"
            for (path, p), (_, r) in zip(pnn.tree_paths(params), pnn.tree_paths(ref), strict=True):
                assert_same_kind(p, X, f"{dtype} step {step} param {path}")
                assert rel_err(p, r) <= tol, f"{dtype} step {step} param {path}: {rel_err(p, r):.3g}"
        assert losses[-1] < losses[0], f"{dtype}: it did not learn: {losses}"


# ---------------------------------------------------------------- 4. dtype, namespace, device; no in-place writes


def check_kinds_and_no_writes(tb: Any, layer: pnn.Layer, params: Any, X: Any) -> None:
    """Y, dX and the grads keep X's dtype, namespace and device; X, dY and the params are unchanged.

    Under ``numpy-readonly`` they are read-only arrays, so an in-place write raises.
    """
    Y, backprop = layer.apply(params, X)
    dY = tb.asarray(np.random.default_rng(2).standard_normal(tuple(Y.shape)), X.dtype)
    inputs = {"X": X, "dY": dY, **{f"param {k}": v for k, v in params.items()}}
    if tb.readonly:  # the harness really hands the library read-only arrays
        assert all(isinstance(a, np.ndarray) and not a.flags.writeable for a in inputs.values())
    before = {name: host(a) for name, a in inputs.items()}
    dX, grads = backprop(dY)
    what = f"{layer!r} {X.dtype}"
    assert_same_kind(Y, X, f"{what} Y")
    assert_same_kind(dX, X, f"{what} dX")
    assert tuple(dX.shape) == tuple(X.shape) and set(grads) == set(params)
    for key, g in grads.items():
        assert tuple(g.shape) == tuple(params[key].shape)
        assert_same_kind(g, params[key], f"{what} grad {key}")
    assert np.all(np.isfinite(host(Y))) and np.all(np.isfinite(host(dX)))  # computed, also when lazy
    for name, a in inputs.items():
        np.testing.assert_array_equal(host(a), before[name], err_msg=f"{what} changed its {name}")


KIND_CASES: dict[str, Callable[[], pnn.Layer]] = {  # geometries of TORCH_CASES (JAX compiles them once)
    "Conv2D": lambda: pnn.Conv2D(3, 2, (2, 3), stride=(2, 1), padding=(1, 0)),
    "MaxPool2D": lambda: pnn.MaxPool2D(3, 1),
    "AvgPool2D": lambda: pnn.AvgPool2D((2, 3), (1, 2)),
    "GlobalAvgPool2D": pnn.GlobalAvgPool2D,
    "Flatten": pnn.Flatten,
}


@pytest.mark.parametrize("case", list(KIND_CASES))
def test_float32_layer_keeps_dtype_namespace_device_and_writes_nothing(tb: Any, case: str) -> None:
    # the widest float is checked with every gradcheck above; float32 is where a stray
    # float64 constant would upcast
    layer = KIND_CASES[case]()
    X = tb.asarray(np.random.default_rng(3).standard_normal(X_SHAPE), "float32")
    check_kinds_and_no_writes(tb, layer, tb.init(layer, seed=1, dtype="float32"), X)


def test_conv_need_dX_false_skips_dX_and_keeps_the_grads(tb: Any) -> None:
    layer = KIND_CASES["Conv2D"]()  # in float32, as above: JAX compiles its ops once
    params = tb.init(layer, seed=3, dtype="float32")
    rng = np.random.default_rng(4)
    Y, backprop = layer.apply(params, tb.asarray(rng.standard_normal(X_SHAPE), "float32"))
    dY = tb.asarray(rng.standard_normal(tuple(Y.shape)), "float32")
    (_, full), (dX, skipped) = backprop(dY), backprop(dY, need_dX=False)
    assert dX is None
    for key in full:
        np.testing.assert_array_equal(host(skipped[key]), host(full[key]))


def test_conv_init_is_he_on_the_window_matrix_and_the_same_everywhere(tb: Any) -> None:
    layer = pnn.Conv2D(3, 4, (2, 3))
    W = host(tb.init(layer, seed=9, dtype="float32")["W"])
    M = pnn.init.he_normal(pnn.host_rng(9), (3 * 2 * 3, 4)).astype(np.float32)  # (fan_in, fan_out)
    np.testing.assert_array_equal(W, M.T.reshape(4, 3, 2, 3))  # bit-identical on every backend
    assert not np.any(host(tb.init(layer, seed=9, dtype="float32")["b"]))


# ---------------------------------------------------------------- 5. clear errors

IMAGES = re.escape("(batch, channels, height, width)")

CONFIG_ERRORS: list[tuple[Callable[[], Any], type[Exception], str]] = [
    (lambda: pnn.Conv2D(1, 2, 0), ValueError, r"Conv2D: kernel_size must be >= 1, got 0"),
    (lambda: pnn.Conv2D(1, 2, 2.5), TypeError, r"Conv2D: kernel_size must be an int, got float"),  # type: ignore[arg-type]
    (lambda: pnn.Conv2D(1, 2, (3,)), TypeError, r"Conv2D: kernel_size must be an int or a pair"),  # type: ignore[arg-type]
    (lambda: pnn.Conv2D(1, 2, 3, stride=0), ValueError, r"Conv2D: stride must be >= 1, got 0"),
    (lambda: pnn.Conv2D(1, 2, 3, stride=(1, 1.5)), TypeError, r"Conv2D: stride\[1\] must be an int"),  # type: ignore[arg-type]
    (lambda: pnn.Conv2D(0, 2, 3), ValueError, r"Conv2D: in_channels must be >= 1"),
    (lambda: pnn.Conv2D(1, 2, 3, padding="full"), ValueError, r"Conv2D: padding must be .*'same', got 'full'"),
    (lambda: pnn.Conv2D(1, 2, 3, padding=-1), ValueError, r"Conv2D: padding must be >= 0, got -1"),
    (lambda: pnn.Conv2D(1, 2, 3, padding=0.5), TypeError, r"Conv2D: padding must be an int"),  # type: ignore[arg-type]
    (lambda: pnn.Conv2D(1, 2, 3, stride=2, padding="same"), ValueError, r"padding='same' needs stride 1"),
    (lambda: pnn.MaxPool2D(0), ValueError, r"MaxPool2D: kernel_size must be >= 1, got 0"),
    (lambda: pnn.MaxPool2D(2, 0), ValueError, r"MaxPool2D: stride must be >= 1, got 0"),
    (lambda: pnn.AvgPool2D(2, True), TypeError, r"AvgPool2D: stride must be an int, got bool"),
]


@pytest.mark.parametrize("make, error, match", CONFIG_ERRORS)
def test_bad_configuration_raises_a_clear_error(make: Callable[[], Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make()


INPUT_ERRORS: dict[str, tuple[Callable[[], pnn.Layer], tuple[int, ...], type[Exception], str]] = {
    "channels": (lambda: pnn.Conv2D(3, 2, 3), (2, 2, 6, 6), ValueError, r"Conv2D\(3, 2, 3\): X must have 3 channels on axis 1 of " + IMAGES + r", got shape \(2, 2, 6, 6\)"),
    "conv 3-D": (lambda: pnn.Conv2D(3, 2, 3), (3, 6, 6), ValueError, r"Conv2D\(3, 2, 3\): X must have 4 dimensions " + IMAGES + r", got shape \(3, 6, 6\)"),
    "pool 2-D": (lambda: pnn.MaxPool2D(2), (6, 6), ValueError, r"MaxPool2D\(2\): X must have 4 dimensions " + IMAGES + r", got shape \(6, 6\)"),
    "global 5-D": (pnn.GlobalAvgPool2D, (1, 1, 2, 2, 2), ValueError, r"GlobalAvgPool2D\(\): X must have 4 dimensions " + IMAGES),
    "kernel": (lambda: pnn.Conv2D(1, 2, (3, 5)), (1, 1, 4, 4), ValueError, r"Conv2D\(1, 2, \(3, 5\)\): kernel 3x5 is larger than the input 4x4; X has shape \(1, 1, 4, 4\)"),
    "padded": (lambda: pnn.Conv2D(1, 2, 5, padding=1), (1, 1, 2, 2), ValueError, r"Conv2D\(1, 2, 5, padding=1\): kernel 5x5 is larger than the input 4x4 \(padded by \(1, 1, 1, 1\).*\(1, 1, 2, 2\)"),
    "pool kernel": (lambda: pnn.AvgPool2D(3), (1, 1, 2, 5), ValueError, r"AvgPool2D\(3\): kernel 3x3 is larger than the input 2x5; X has shape \(1, 1, 2, 5\)"),
    "flatten 0-d": (pnn.Flatten, (), ValueError, r"Flatten\(\): X must have a batch axis"),
}


@pytest.mark.parametrize("case", list(INPUT_ERRORS))
def test_bad_input_raises_a_clear_error_and_keeps_the_params(tb: Any, case: str) -> None:
    make, shape, error, match = INPUT_ERRORS[case]
    layer = make()
    params = tb.init(layer, seed=0)
    before = {k: host(v) for k, v in params.items()}
    with pytest.raises(error, match=match):
        layer(params, tb.asarray(np.ones(shape), tb.float))
    for key, value in params.items():
        np.testing.assert_array_equal(host(value), before[key])


def test_conv_params_of_another_layout_are_refused(tb: Any) -> None:
    layer = pnn.Conv2D(3, 2, (2, 3))
    W = tb.asarray(np.ones((3, 2, 3, 2)), tb.float)  # axes in another order, e.g. (in, out, kw, kh)
    params = {"W": W, "b": tb.asarray(np.zeros(2), tb.float)}
    with pytest.raises(ValueError, match=re.escape("Conv2D(3, 2, (2, 3)): params do not fit this layer")):
        layer(params, tb.asarray(np.ones(X_SHAPE), tb.float))
    np.testing.assert_array_equal(host(params["W"]), 1.0)


# ------------------------------------------------ 6. PyTorch weights, as docs/guide/cnn.md loads them


def guide_snippet() -> str:
    text = GUIDE.read_text()
    found = re.search(r"<!-- docs-conv-torch -->\n```python\n(.*?)\n```", text, re.S)
    assert found, f"{GUIDE} lost its PyTorch weight-loading example (the marker <!-- docs-conv-torch -->)"
    return found.group(1)


def test_guide_pytorch_weights_load_and_give_torchs_output(tb: Any) -> None:
    pytest.importorskip("torch")
    if "float64" not in tb.dtypes:
        pytest.skip(f"{tb.spec} has no float64; the guide's example uses float64")
    namespace: dict[str, Any] = {}
    with pnn.use_backend(tb.be):
        exec(compile(guide_snippet(), str(GUIDE), "exec"), namespace)  # noqa: S102 (our own docs)
    Y, conv, X = namespace["Y"], namespace["conv"], namespace["X"]
    assert_same_kind(Y, tb.be.asarray(np.ones(1), "float64"), "the guide's Y")
    assert rel_err(Y, pnn.to_numpy(conv(namespace["torch"].from_numpy(X)))) <= 1e-12


def test_conv_padding_forms_and_repr() -> None:
    # PyTorch's padding="same" for an even kernel: the extra row/column on the bottom/right
    assert pnn.Conv2D(1, 2, (2, 4), padding="same").pads == (0, 1, 1, 2)  # (top, bottom, left, right)
    assert pnn.Conv2D(1, 2, 3, padding="valid").pads == pnn.Conv2D(1, 2, 3).pads == (0, 0, 0, 0)
    assert pnn.Conv2D(1, 2, 3, padding=(2, 1)).pads == (2, 2, 1, 1)
    assert repr(pnn.Conv2D(1, 2, 3, padding="valid")) == "Conv2D(1, 2, 3)"
    assert repr(pnn.Conv2D(1, 2, (2, 4), stride=(1, 2), padding=1, bias=False)) == (
        "Conv2D(1, 2, (2, 4), stride=(1, 2), padding=1, bias=False)"
    )
    assert repr(pnn.MaxPool2D(2)) == "MaxPool2D(2)" and repr(pnn.AvgPool2D((2, 3), 1)) == "AvgPool2D((2, 3), stride=1)"
