"""Bad input fails early with a ValueError or TypeError that says what is wrong.

Every case in ``CASES`` is run on the backend chosen in conftest.py and checks:

* the exception type (ValueError, TypeError or a library subclass of them);
* that the message holds the key facts: the layer or argument, the shapes,
  dtypes, namespaces or devices involved (so it did not fail deep inside an
  array namespace);
* that params handed to the call are unchanged afterwards, and files on disk
  the call reads or would overwrite are byte-for-byte unchanged.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn import losses, optim

# --------------------------------------------------------------------------- helpers


@dataclass
class Setup:
    """What one case does: the failing call and what its message must contain."""

    call: Callable[[], Any]
    match: tuple[str, ...]
    params: Any = None  # checked unchanged after the call
    files: tuple[Path, ...] = ()  # checked byte-for-byte unchanged after the call
    absent: tuple[str, ...] = ()  # must not be in the message (a wrong diagnosis)


@dataclass(frozen=True)
class Case:
    id: str
    exc: type[Exception]
    setup: Callable[[Any, Path], Setup]


CASES: list[Case] = []


def case(
    id: str, exc: type[Exception]
) -> Callable[[Callable[[Any, Path], Setup]], Callable[[Any, Path], Setup]]:
    """Register a setup function as a row of the CASES table."""

    def register(fn: Callable[[Any, Path], Setup]) -> Callable[[Any, Path], Setup]:
        CASES.append(Case(id, exc, fn))
        return fn

    return register


def data(rows: int, cols: int) -> np.ndarray:
    """Small deterministic float64 host data of shape (rows, cols)."""
    return np.arange(rows * cols, dtype=np.float64).reshape(rows, cols) / 10.0


def snapshot(params: Any) -> list[np.ndarray]:
    """Host copies of every leaf (to_numpy returns NumPy arrays as they are, so copy)."""
    return [
        np.array(pnn.to_numpy(leaf) if hasattr(leaf, "shape") else leaf, copy=True)
        for leaf in pnn.tree_leaves(params)
    ]


def strict_backends() -> tuple[pnn.Backend, pnn.Backend]:
    """array_api_strict on its default device and on 'device1'."""
    pytest.importorskip("array_api_strict")
    return pnn.get_backend("array_api_strict"), pnn.get_backend("array_api_strict:device1")


def foreign_array(tb: Any, host: np.ndarray) -> tuple[Any, str]:
    """``host`` as an array of a library other than tb.be's and other than NumPy, and its type name."""
    if tb.be.name != "array_api_strict":
        pytest.importorskip("array_api_strict")
        a = pnn.get_backend("array_api_strict").asarray(host)
        return a, "array_api_strict"
    torch = pytest.importorskip("torch")
    return torch.asarray(host), "torch.Tensor"


def fit_call(model: pnn.Layer, params: Any, X: Any, Y: Any, **kwargs: Any) -> Callable[[], Any]:
    kwargs.setdefault("loss", losses.sum_squared_error)
    kwargs.setdefault("optimizer", optim.SGD(0.1))
    kwargs.setdefault("progress", False)
    return lambda: pnn.fit(model, params, X, Y, **kwargs)


class _WritesMarker:
    """Unpickling this calls open(marker, 'w'), creating the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def saved_checkpoint(tb: Any, tmp_path: Path) -> Path:
    model = pnn.Sequential(pnn.Linear(3, 2), pnn.ReLU(), pnn.LayerNorm(2))
    path = tmp_path / "model.safetensors"
    pnn.save(path, tb.init(model))
    return path


# --------------------------------------------------------------------------- layers: shapes


@case("linear-wrong-features", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    layer = pnn.Linear(3, 2)
    params = tb.init(layer)
    X = tb.asarray(data(4, 5), tb.float)
    return Setup(lambda: layer(params, X), ("Linear(3, 2)", "(4, 5)", "3 features"), params)


@case("sequential-layer0-wrong-features", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    model = pnn.Sequential(pnn.Linear(3, 2), pnn.ReLU(), pnn.Linear(2, 1))
    params = tb.init(model)
    X = tb.asarray(data(4, 5), tb.float)
    return Setup(lambda: model(params, X), ("Sequential layer 0", "Linear(3, 2)", "(4, 5)"), params)


@case("sequential-layer2-wrong-features", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    # layer 0 maps 3 -> 2 features, but layer 2 expects 3
    model = pnn.Sequential(pnn.Linear(3, 2), pnn.ReLU(), pnn.Linear(3, 1))
    params = tb.init(model)
    X = tb.asarray(data(4, 3), tb.float)
    return Setup(lambda: model(params, X), ("Sequential layer 2", "Linear(3, 1)", "(4, 2)"), params)


@case("linear-1d-X", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    layer = pnn.Linear(3, 2)
    params = tb.init(layer)
    X = tb.asarray(data(1, 3).reshape(3), tb.float)
    return Setup(lambda: layer(params, X), ("Linear(3, 2)", "(3,)", "2 dimensions"), params)


@case("linear-3d-X-wrong-features", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    layer = pnn.Linear(3, 2)
    params = tb.init(layer)
    X = tb.asarray(data(8, 4).reshape(2, 4, 4), tb.float)
    return Setup(lambda: layer(params, X), ("Linear(3, 2)", "(2, 4, 4)", "3 features"), params)


@case("linear-X-not-an-array", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    layer = pnn.Linear(3, 2)
    params = tb.init(layer)
    return Setup(lambda: layer(params, [[1.0, 2.0, 3.0]]), ("Linear(3, 2)", "list", "asarray"), params)


@case("layernorm-wrong-features", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    layer = pnn.LayerNorm(4)
    params = tb.init(layer)
    X = tb.asarray(data(2, 3), tb.float)
    return Setup(lambda: layer(params, X), ("LayerNorm(4)", "(2, 3)", "4 features"), params)


# --------------------------------------------------------------------------- layers: dtypes


@case("linear-integer-X", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    layer = pnn.Linear(3, 2)
    params = tb.init(layer)
    X = tb.asarray(np.arange(12).reshape(4, 3), "int32")
    return Setup(lambda: layer(params, X), ("Linear(3, 2)", "int32", "floating"), params)


@case("relu-integer-X", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    X = tb.asarray(np.arange(12).reshape(4, 3), "int32")
    return Setup(lambda: pnn.ReLU()({}, X), ("ReLU()", "int32", "floating"))


@case("linear-float32-X-float64-params", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    if "float64" not in tb.dtypes:
        pytest.skip(f"{tb.spec} has no float64")
    layer = pnn.Linear(3, 2)
    params = tb.init(layer, dtype="float64")
    X = tb.asarray(data(4, 3), "float32")
    return Setup(lambda: layer(params, X), ("Linear(3, 2)", "float32", "float64"), params)


@case("sum_squared_error-integer-targets", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    Y = tb.asarray(data(4, 2), tb.float)
    T = tb.asarray(np.ones((4, 2)), "int32")
    return Setup(lambda: losses.sum_squared_error(Y, T), ("sum_squared_error", "T", "int32", "floating"))


@case("mean_squared_error-shape-mismatch", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    Y = tb.asarray(data(4, 1), tb.float)
    T = tb.asarray(data(1, 4).reshape(4), tb.float)
    return Setup(lambda: losses.mean_squared_error(Y, T), ("mean_squared_error", "(4, 1)", "(4,)", "reshape"))


@case("mean_squared_error-float32-vs-float64", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    if "float64" not in tb.dtypes:
        pytest.skip(f"{tb.spec} has no float64")
    Y = tb.asarray(data(4, 2), "float32")
    T = tb.asarray(data(4, 2), "float64")
    return Setup(
        lambda: losses.mean_squared_error(Y, T), ("mean_squared_error", "T", "float64", "Y", "float32")
    )


# --------------------------------------------------------------------------- namespaces and devices


@case("linear-X-of-another-library", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    layer = pnn.Linear(3, 2)
    params = tb.init(layer)
    X, kind = foreign_array(tb, data(4, 3).astype(tb.float))
    return Setup(lambda: layer(params, X), ("Linear(3, 2)", kind, "different array libraries"), params)


@case("linear-numpy-X-non-numpy-params", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    if tb.be.name == "numpy":
        pytest.skip("params are NumPy arrays on this backend")
    layer = pnn.Linear(3, 2)
    params = tb.init(layer)
    X = data(4, 3).astype(tb.float)
    return Setup(
        lambda: layer(params, X), ("Linear(3, 2)", "numpy.ndarray", "different array libraries"), params
    )


@case("fit-X-of-another-library", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    model = pnn.Linear(3, 2)
    params = tb.init(model)
    X, _ = foreign_array(tb, data(4, 3).astype(tb.float))
    return Setup(fit_call(model, params, X, data(4, 2)), ("fit", "X", "params", "to_backend"), params)


@case("sum_squared_error-T-of-another-library", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    Y = tb.asarray(data(4, 2), tb.float)
    T, kind = foreign_array(tb, data(4, 2).astype(tb.float))
    return Setup(
        lambda: losses.sum_squared_error(Y, T), ("sum_squared_error", "T", kind, "different array libraries")
    )


@case("softmax_cross_entropy-labels-of-another-library", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    Y = tb.asarray(data(4, 3), tb.float)
    labels, kind = foreign_array(tb, np.array([0, 1, 2, 0]))
    return Setup(
        lambda: losses.softmax_cross_entropy(Y, labels),
        ("softmax_cross_entropy", "labels", kind, "different array libraries"),
    )


@case("linear-X-on-another-device", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    cpu, dev1 = strict_backends()
    layer = pnn.Linear(3, 2)
    params = layer.init(0, backend=dev1, dtype="float32")
    X = cpu.asarray(data(4, 3), "float32")
    return Setup(lambda: layer(params, X), ("Linear(3, 2)", "device", "CPU_DEVICE", "device1"), params)


@case("fit-X-on-another-device", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    cpu, dev1 = strict_backends()
    model = pnn.Sequential(pnn.Linear(3, 2))
    params = model.init(0, backend=dev1, dtype="float32")
    X = cpu.asarray(data(4, 3), "float32")
    return Setup(
        fit_call(model, params, X, data(4, 2)), ("fit", "X", "device", "CPU_DEVICE", "device1"), params
    )


@case("sum_squared_error-T-on-another-device", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    cpu, dev1 = strict_backends()
    Y = dev1.asarray(data(4, 2), "float32")
    T = cpu.asarray(data(4, 2), "float32")
    return Setup(
        lambda: losses.sum_squared_error(Y, T), ("sum_squared_error", "T", "device", "CPU_DEVICE", "device1")
    )


@case("softmax_cross_entropy-labels-on-another-device", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    cpu, dev1 = strict_backends()
    Y = dev1.asarray(data(4, 3), "float32")
    labels = cpu.asarray(np.array([0, 1, 2, 0]), "int64")
    return Setup(
        lambda: losses.softmax_cross_entropy(Y, labels),
        ("softmax_cross_entropy", "labels", "device", "CPU_DEVICE", "device1"),
    )


@case("predict-params-on-two-devices", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    cpu, dev1 = strict_backends()
    model = pnn.Sequential(pnn.Linear(3, 2), pnn.LayerNorm(2))
    params = [pnn.Linear(3, 2).init(0, backend=dev1), pnn.LayerNorm(2).init(0, backend=cpu)]
    return Setup(
        lambda: pnn.predict(model, params, data(4, 3)), ("predict", "several devices", "device1"), params
    )


# --------------------------------------------------------------------------- softmax_cross_entropy labels


def _sce(tb: Any, labels: Any, dtype: str = "int64") -> Callable[[], Any]:
    Y = tb.asarray(data(4, 3), tb.float)
    L = tb.asarray(np.asarray(labels), dtype)
    return lambda: losses.softmax_cross_entropy(Y, L)


CASES += [
    Case(
        "labels-negative",
        ValueError,
        lambda tb, tmp: Setup(
            _sce(tb, [0, -1, 2, 1]), ("softmax_cross_entropy", "[0, 3)", "3 classes", "[-1, 2]")
        ),
    ),
    Case(
        "labels-too-large",
        ValueError,
        lambda tb, tmp: Setup(
            _sce(tb, [0, 3, 2, 1]), ("softmax_cross_entropy", "[0, 3)", "3 classes", "[0, 3]")
        ),
    ),
    Case(
        "labels-float",
        TypeError,
        lambda tb, tmp: Setup(
            _sce(tb, [0.0, 1.0, 2.0, 1.0], tb.float), ("softmax_cross_entropy", "labels", tb.float, "integer")
        ),
    ),
    Case(
        "labels-wrong-length",
        ValueError,
        lambda tb, tmp: Setup(_sce(tb, [0, 1, 2]), ("softmax_cross_entropy", "(3,)", "4 rows", "(4,)")),
    ),
    Case(
        "labels-one-hot-2d",
        ValueError,
        lambda tb, tmp: Setup(
            _sce(tb, np.eye(3, dtype=np.int64)[[0, 1, 2, 0]]), ("softmax_cross_entropy", "(4, 3)", "(4,)")
        ),
    ),
]


# --------------------------------------------------------------------------- fit / predict / evaluate


def _fit_case(
    id: str, exc: type[Exception], match: tuple[str, ...], X: Any = None, Y: Any = None, **kw: Any
) -> Case:
    def setup(tb: Any, tmp: Path) -> Setup:
        model = pnn.Sequential(pnn.Linear(3, 2))
        params = tb.init(model)
        Xd = data(6, 3) if X is None else X
        Yd = data(6, 2) if Y is None else Y
        return Setup(fit_call(model, params, Xd, Yd, **kw), match, params)

    return Case(id, exc, setup)


_X_NAN = data(6, 3)
_X_NAN[2, 1] = np.nan
_X_INF = data(6, 3)
_X_INF[4, 0] = -np.inf

CASES += [
    _fit_case("fit-X-Y-different-lengths", ValueError, ("fit", "6 rows", "Y has 5"), Y=data(5, 2)),
    _fit_case("fit-batch_size-0", ValueError, ("fit", "batch_size", ">= 1", "got 0"), batch_size=0),
    _fit_case("fit-batch_size-negative", ValueError, ("fit", "batch_size", ">= 1", "got -1"), batch_size=-1),
    _fit_case("fit-batch_size-float", TypeError, ("fit", "batch_size", "int", "float"), batch_size=2.5),
    _fit_case("fit-epochs-negative", ValueError, ("fit", "epochs", ">= 0", "got -1"), epochs=-1),
    _fit_case("fit-nan-in-X", ValueError, ("fit", "X", "NaN", "row 2"), X=_X_NAN),
    _fit_case("fit-inf-in-X", ValueError, ("fit", "X", "inf", "row 4"), X=_X_INF),
    _fit_case(
        "fit-nan-in-Y",
        ValueError,
        ("fit", "Y", "NaN", "row 1"),
        Y=np.where(np.arange(12).reshape(6, 2) == 3, np.nan, 0.0),
    ),
    _fit_case("fit-empty-X", ValueError, ("fit", "empty", "0 rows"), X=np.zeros((0, 3)), Y=np.zeros((0, 2))),
    _fit_case(
        "fit-ragged-X", ValueError, ("fit", "X", "rectangular"), X=[[1.0, 2.0, 3.0], [1.0, 2.0]], Y=data(2, 2)
    ),
    _fit_case("fit-string-X", TypeError, ("fit", "X", "<U", "floating"), X=np.full((6, 3), "a")),
    _fit_case(
        "fit-on_nonfinite-unknown", ValueError, ("fit", "on_nonfinite", "'explode'"), on_nonfinite="explode"
    ),
    _fit_case(
        "fit-validation_data-not-a-pair",
        TypeError,
        ("fit", "validation_data", "pair"),
        validation_data=data(2, 3),
    ),
]


@case("predict-batch_size-0", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    model = pnn.Linear(3, 2)
    params = tb.init(model)
    return Setup(
        lambda: pnn.predict(model, params, data(4, 3), batch_size=0),
        ("predict", "batch_size", ">= 1"),
        params,
    )


@case("predict-empty-X", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    model = pnn.Linear(3, 2)
    params = tb.init(model)
    return Setup(lambda: pnn.predict(model, params, np.zeros((0, 3))), ("predict", "empty"), params)


@case("evaluate-empty-X", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    model = pnn.Linear(3, 2)
    params = tb.init(model)
    X, Y = np.zeros((0, 3)), np.zeros((0, 2))
    return Setup(
        lambda: pnn.evaluate(model, params, X, Y, loss=losses.sum_squared_error),
        ("evaluate", "empty", "0 rows"),
        params,
    )


@case("evaluate-X-Y-different-lengths", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    model = pnn.Linear(3, 2)
    params = tb.init(model)
    return Setup(
        lambda: pnn.evaluate(model, params, data(4, 3), data(3, 2), loss=losses.sum_squared_error),
        ("evaluate", "4 rows", "Y has 3"),
        params,
    )


@case("optimizer-step-grads-of-another-structure", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    model = pnn.Sequential(pnn.Linear(3, 2), pnn.ReLU(), pnn.Linear(2, 1))
    params = tb.init(model)
    opt = optim.Adam()
    state = opt.init(params)
    grads = params[:2]
    return Setup(lambda: opt.step(params, grads, state), ("Adam.step", "structure"), params)


# --------------------------------------------------------------------------- optimizer hyperparameters

_NAN, _INF = math.nan, math.inf
_OPT_ROWS: list[tuple[type, dict[str, Any], tuple[str, ...]]] = []
for _cls in (optim.SGD, optim.Adam, optim.AdamW):
    for _lr in (_NAN, _INF, -0.1):
        _OPT_ROWS.append((_cls, {"lr": _lr}, ("lr", repr(_lr))))
    _OPT_ROWS.append((_cls, {"weight_decay": -1.0}, ("weight_decay", "-1.0")))
_OPT_ROWS += [
    (optim.SGD, {"momentum": 1.0}, ("momentum", "[0.0, 1.0)", "1.0")),
    (optim.SGD, {"momentum": -0.5}, ("momentum", "-0.5")),
    (optim.SGD, {"nesterov": True}, ("nesterov", "momentum > 0")),
    (optim.SGD, {"lr": "0.1"}, ("lr", "'0.1'")),
    (optim.Adam, {"b1": 1.0}, ("b1", "[0.0, 1.0)", "1.0")),
    (optim.AdamW, {"b1": 1.0}, ("b1", "[0.0, 1.0)")),
    (optim.Adam, {"b2": 1.0}, ("b2", "[0.0, 1.0)")),
    (optim.Adam, {"b1": -0.1}, ("b1", "-0.1")),
    (optim.Adam, {"eps": -1e-8}, ("eps", "-1e-08")),
    (optim.AdamW, {"eps": _NAN}, ("eps", "nan")),
]


def _opt_case(cls: type, kwargs: dict[str, Any], match: tuple[str, ...]) -> Case:
    id = f"{cls.__name__}-" + "-".join(f"{k}={v!r}" for k, v in kwargs.items())
    return Case(id, ValueError, lambda tb, tmp: Setup(lambda: cls(**kwargs), (cls.__name__ + ":", *match)))


CASES += [_opt_case(*row) for row in _OPT_ROWS]


# --------------------------------------------------------------------------- layer constructors and params


def _ctor(id: str, exc: type[Exception], make: Callable[[], Any], match: tuple[str, ...]) -> Case:
    return Case(id, exc, lambda tb, tmp: Setup(make, match))


CASES += [
    _ctor("Linear-in-0", ValueError, lambda: pnn.Linear(0, 2), ("Linear", "in_features", ">= 1", "0")),
    _ctor("Linear-in-negative", ValueError, lambda: pnn.Linear(-3, 2), ("Linear", "in_features", "-3")),
    _ctor("Linear-out-0", ValueError, lambda: pnn.Linear(3, 0), ("Linear", "out_features", ">= 1")),
    _ctor(
        "Linear-in-float", TypeError, lambda: pnn.Linear(2.5, 2), ("Linear", "in_features", "int", "float")
    ),
    _ctor("Linear-in-bool", TypeError, lambda: pnn.Linear(True, 2), ("Linear", "in_features", "int", "bool")),
    _ctor(
        "Linear-unknown-init",
        ValueError,
        lambda: pnn.Linear(3, 2, init="xavier"),
        ("Linear(3, 2)", "'xavier'", "he", "glorot"),
    ),
    _ctor(
        "Dropout-rate-negative", ValueError, lambda: pnn.Dropout(-0.1), ("Dropout", "rate", "[0, 1)", "-0.1")
    ),
    _ctor("Dropout-rate-1", ValueError, lambda: pnn.Dropout(1.0), ("Dropout", "rate", "[0, 1)", "1.0")),
    _ctor("Dropout-rate-1.5", ValueError, lambda: pnn.Dropout(1.5), ("Dropout", "rate", "1.5")),
    _ctor("Dropout-rate-nan", ValueError, lambda: pnn.Dropout(math.nan), ("Dropout", "rate", "nan")),
    _ctor(
        "LayerNorm-features-0", ValueError, lambda: pnn.LayerNorm(0), ("LayerNorm", "features", ">= 1", "0")
    ),
    _ctor("LayerNorm-eps-0", ValueError, lambda: pnn.LayerNorm(3, eps=0.0), ("LayerNorm", "eps", "> 0")),
    _ctor(
        "LeakyReLU-alpha-negative", ValueError, lambda: pnn.LeakyReLU(-1.0), ("LeakyReLU", "alpha", ">= 0")
    ),
    _ctor(
        "Sequential-non-layer-item",
        TypeError,
        lambda: pnn.Sequential(pnn.Linear(3, 2), 3),
        ("Sequential", "item 1", "int", "not a Layer"),
    ),
    _ctor(
        "Sequential-layer-class-not-instance",
        TypeError,
        lambda: pnn.Sequential(pnn.ReLU),
        ("Sequential", "item 0", "type", "instances"),
    ),
]


@case("init-integer-dtype", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    return Setup(
        lambda: pnn.Linear(3, 2).init(0, backend=tb.be, dtype="int32"), ("Linear(3, 2)", "dtype", "int32")
    )


@case("init-float-seed", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    return Setup(lambda: pnn.Linear(3, 2).init(1.5, backend=tb.be), ("seed", "int", "float"))


@case("Sequential-apply-params-wrong-length", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    model = pnn.Sequential(pnn.Linear(3, 2), pnn.ReLU(), pnn.Linear(2, 1))
    params = tb.init(model)[:2]
    X = tb.asarray(data(4, 3), tb.float)
    return Setup(
        lambda: model(params, X), ("Sequential(Linear(3, 2), ReLU(), Linear(2, 1))", "(3)", "got 2"), params
    )


@case("Sequential-apply-params-of-one-layer", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    model = pnn.Sequential(pnn.Linear(3, 2), pnn.ReLU())
    params = tb.init(pnn.Linear(3, 2))
    X = tb.asarray(data(4, 3), tb.float)
    return Setup(lambda: model(params, X), ("Sequential(", "one entry per layer", "got dict"), params)


@case("Linear-apply-params-of-another-shape", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    layer = pnn.Linear(3, 2)
    params = tb.init(pnn.Linear(4, 2))
    X = tb.asarray(data(4, 3), tb.float)
    return Setup(lambda: layer(params, X), ("Linear(3, 2)", "expected W (3, 2)", "(4, 2)", "init"), params)


@case("Linear-apply-params-without-bias", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    layer = pnn.Linear(3, 2)
    params = tb.init(pnn.Linear(3, 2, bias=False))
    X = tb.asarray(data(4, 3), tb.float)
    return Setup(lambda: layer(params, X), ("Linear(3, 2)", "b (2,)", "got {'W': (3, 2)}"), params)


@case("Linear-apply-W-not-an-array", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    layer = pnn.Linear(3, 2)
    params = {"W": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], "b": tb.asarray(np.zeros(2), tb.float)}
    X = tb.asarray(data(4, 3), tb.float)
    return Setup(lambda: layer(params, X), ("Linear(3, 2)", "params['W']", "list"))


@case("LayerNorm-apply-params-of-another-shape", ValueError)
def _(tb: Any, tmp: Path) -> Setup:
    layer = pnn.LayerNorm(3)
    params = tb.init(pnn.LayerNorm(4))
    X = tb.asarray(data(4, 3), tb.float)
    return Setup(lambda: layer(params, X), ("LayerNorm(3)", "(3,)", "(4,)"), params)


# --------------------------------------------------------------------------- backends


@case("get_backend-unknown-name", pnn.BackendError)
def _(tb: Any, tmp: Path) -> Setup:
    return Setup(
        lambda: pnn.get_backend("nope"), ("'nope'", "numpy", "torch", "jax", "array_api_strict", "cupy")
    )


@case("get_backend-unknown-device", pnn.BackendError)
def _(tb: Any, tmp: Path) -> Setup:
    pytest.importorskip("array_api_strict")
    return Setup(
        lambda: pnn.get_backend("array_api_strict", device="device9"),
        ("array_api_strict", "'device9'", "CPU_DEVICE", "device1"),
    )


@case("get_backend-not-installed", pnn.BackendError)
def _(tb: Any, tmp: Path) -> Setup:
    try:
        import cupy  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("cupy is installed")
    return Setup(lambda: pnn.get_backend("cupy"), ("'cupy'", "not installed", "pip install"))


@case("get_backend-torch-bad-device-string", pnn.BackendError)
def _(tb: Any, tmp: Path) -> Setup:
    pytest.importorskip("torch")
    return Setup(lambda: pnn.get_backend("torch", device="xyz"), ("'torch'", "'xyz'", "cpu"))


@case("get_backend-name-not-a-string", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    return Setup(lambda: pnn.get_backend(3), ("get_backend", "name", "int"))  # type: ignore[arg-type]


@case("asarray-float64-on-no_float64-device", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    pytest.importorskip("array_api_strict")
    be = pnn.get_backend("array_api_strict:no_float64")
    return Setup(lambda: be.asarray([1.0, 2.0], dtype="float64"), ("float64", "no_float64", "float32"))


@case("asarray-float64-host-array-on-no_float64-device", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    pytest.importorskip("array_api_strict")
    be = pnn.get_backend("array_api_strict:no_float64")
    return Setup(lambda: be.asarray(np.zeros(3)), ("float64", "no_float64", "float32"))


@case("asarray-unknown-dtype-name", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    return Setup(lambda: tb.be.asarray([1.0], dtype="float128"), ("'float128'", "float32", "float64"))


# --------------------------------------------------------------------------- save / load


@case("load-missing-file", pnn.CheckpointError)
def _(tb: Any, tmp: Path) -> Setup:
    path = tmp / "nope.safetensors"
    return Setup(lambda: pnn.load(path, backend=tb.be), ("load", str(path), "no checkpoint"))


@case("load-directory", pnn.CheckpointError)
def _(tb: Any, tmp: Path) -> Setup:
    return Setup(lambda: pnn.load(tmp, backend=tb.be), ("load", str(tmp), "directory"))


@case("load-empty-file", pnn.CheckpointError)
def _(tb: Any, tmp: Path) -> Setup:
    path = tmp / "empty.safetensors"
    path.write_bytes(b"")
    return Setup(
        lambda: pnn.load(path, backend=tb.be), ("load", str(path), "truncated", "0 bytes"), files=(path,)
    )


@case("load-truncated-in-header", pnn.CheckpointError)
def _(tb: Any, tmp: Path) -> Setup:
    path = saved_checkpoint(tb, tmp)
    path.write_bytes(path.read_bytes()[:40])
    return Setup(lambda: pnn.load(path, backend=tb.be), ("load", str(path), "truncated"), files=(path,))


@case("load-truncated-in-body", pnn.CheckpointError)
def _(tb: Any, tmp: Path) -> Setup:
    path = saved_checkpoint(tb, tmp)
    full = path.read_bytes()
    path.write_bytes(full[:-5])
    return Setup(lambda: pnn.load(path, backend=tb.be), ("load", str(path), "truncated"), files=(path,))


@case("load-truncated-header-length-0x280-is-not-called-pickle", pnn.CheckpointError)
def _(tb: Any, tmp: Path) -> Setup:
    # A checkpoint whose 8-byte header length is 0x280 starts with b"\x80\x02", like a pickle.
    path = saved_checkpoint(tb, tmp)
    full = path.read_bytes()
    (n,) = struct.unpack("<Q", full[:8])
    assert n < 0x280
    header = full[8 : 8 + n] + b" " * (0x280 - n)  # JSON allows trailing spaces (safetensors pads so too)
    path.write_bytes(struct.pack("<Q", 0x280) + header + full[8 + n :])
    assert len(pnn.tree_leaves(pnn.load(path, backend=tb.be))) == 4  # the padded file is a valid checkpoint
    path.write_bytes(path.read_bytes()[:100])
    return Setup(
        lambda: pnn.load(path, backend=tb.be),
        ("load", str(path), "truncated", "640 bytes"),
        files=(path,),
        absent=("pickle",),
    )


@case("load-random-bytes", pnn.CheckpointError)
def _(tb: Any, tmp: Path) -> Setup:
    path = tmp / "random.bin"
    path.write_bytes(np.random.default_rng(1234).bytes(512))
    return Setup(
        lambda: pnn.load(path, backend=tb.be), ("load", str(path), "not a safetensors file"), files=(path,)
    )


@case("load-foreign-safetensors", pnn.CheckpointError)
def _(tb: Any, tmp: Path) -> Setup:
    from safetensors.numpy import save_file

    path = tmp / "foreign.safetensors"
    save_file({"weight": np.zeros((2, 2), dtype=np.float32)}, str(path))
    return Setup(
        lambda: pnn.load(path, backend=tb.be),
        ("load", str(path), "not a portable_nn checkpoint"),
        files=(path,),
    )


@case("load-checkpoint-with-broken-tree", pnn.CheckpointError)
def _(tb: Any, tmp: Path) -> Setup:
    from safetensors.numpy import save_file

    path = tmp / "broken.safetensors"
    meta = {"format": "portable_nn.params/1", "version": pnn.__version__, "tree": json.dumps(["0.W"])}
    save_file(
        {"0.W": np.zeros((2, 2), dtype=np.float32), "1.b": np.zeros(2, dtype=np.float32)}, str(path), meta
    )
    return Setup(
        lambda: pnn.load(path, backend=tb.be), ("load", str(path), "inconsistent", "1.b"), files=(path,)
    )


@case("load-metadata-not-an-object", pnn.CheckpointError)
def _(tb: Any, tmp: Path) -> Setup:
    path = tmp / "meta.safetensors"
    header = json.dumps({"__metadata__": "portable_nn"}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return Setup(
        lambda: pnn.load(path, backend=tb.be), ("load", str(path), "corrupted", "__metadata__"), files=(path,)
    )


@case("load-pickle-is-never-unpickled", pnn.CheckpointError)
def _(tb: Any, tmp: Path) -> Setup:
    marker = tmp / "unpickled.marker"
    path = tmp / "model.pkl"
    path.write_bytes(pickle.dumps(_WritesMarker(marker), protocol=pickle.HIGHEST_PROTOCOL))

    def call() -> Any:
        try:
            return pnn.load(path, backend=tb.be)
        finally:
            assert not marker.exists(), "load unpickled the file: the marker was created"

    return Setup(call, ("load", str(path), "pickle", "never unpickled"), files=(path,))


@case("load-float64-onto-no_float64-device", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    pytest.importorskip("array_api_strict")
    path = saved_checkpoint(tb, tmp)
    return Setup(
        lambda: pnn.load(path, backend="array_api_strict:no_float64", dtype="float64"),
        ("float64", "no_float64"),
        files=(path,),
    )


@case("save-non-array-leaf", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    path = saved_checkpoint(tb, tmp)  # an existing checkpoint that must survive
    params = [tb.init(pnn.Linear(3, 2)), {"scale": 0.5j}]  # Python bool, int, float and None do save
    return Setup(
        lambda: pnn.save(path, params), ("save", "'1.scale'", "complex", "not an array"), params, (path,)
    )


@case("save-dotted-dict-key", TypeError)
def _(tb: Any, tmp: Path) -> Setup:
    path = saved_checkpoint(tb, tmp)
    params = {"layer.W": tb.asarray(data(3, 2), tb.float)}
    return Setup(lambda: pnn.save(path, params), ("save", "'layer.W'", "without '.'"), params, (path,))


# --------------------------------------------------------------------------- the test


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_raises_a_clear_error(case: Case, tb: Any, tmp_path: Path) -> None:
    s = case.setup(tb, tmp_path)
    before = snapshot(s.params) if s.params is not None else None
    files_before = {p: p.read_bytes() for p in s.files}
    listing_before = sorted(os.listdir(tmp_path))

    with pytest.raises(case.exc) as info:
        s.call()

    err = info.value
    assert isinstance(err, (TypeError, ValueError)), f"{type(err).__name__} is not a TypeError/ValueError"
    msg = str(err)
    missing = [m for m in s.match if m not in msg]
    assert not missing, f"message lacks {missing}: {msg!r}"
    wrong = [m for m in s.absent if m in msg]
    assert not wrong, f"message wrongly says {wrong}: {msg!r}"

    if before is not None:
        after = snapshot(s.params)
        assert len(after) == len(before)
        for a, b in zip(after, before, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    for p, content in files_before.items():
        assert p.read_bytes() == content, f"{p} changed on disk"
    assert sorted(os.listdir(tmp_path)) == listing_before, "files were created or removed"


def test_case_ids_are_unique_and_enough() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 35


def test_pickle_payload_would_create_the_marker(tmp_path: Path) -> None:
    """The pickle case is meaningful: unpickling its payload does create the marker."""
    marker = tmp_path / "proof.marker"
    f = pickle.loads(pickle.dumps(_WritesMarker(marker), protocol=pickle.HIGHEST_PROTOCOL))
    f.close()
    assert marker.exists()


def test_adam_eps_zero_is_allowed() -> None:
    """optim documents eps in [0, inf]: 0 is accepted, only negatives and NaN/inf are refused."""
    assert optim.Adam(eps=0.0).eps == 0.0
    assert optim.AdamW(eps=0.0).eps == 0.0


def test_error_messages_name_the_fix(tb: Any) -> None:
    """Spot-check that messages also say how to fix the input."""
    layer = pnn.Linear(3, 2)
    params = tb.init(layer)
    with pytest.raises(ValueError, match="in_features against the data's columns"):
        layer(params, tb.asarray(data(4, 5), tb.float))
    with pytest.raises(TypeError, match=r"be\.asarray\(data, dtype="):
        layer(params, tb.asarray(np.arange(12).reshape(4, 3), "int32"))
