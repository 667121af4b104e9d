"""BatchNorm and the model state on the backend under test (see conftest.py).

* backprop agrees with finite differences (hypothesis-drawn shapes, 2-D and NCHW);
* forward, backward and the running-statistics update agree with
  ``torch.nn.functional.batch_norm`` in training and inference (torch is the oracle);
* a CNN with BatchNorm trained by ``fit`` agrees with NumPy (params *and* state),
  also on JAX's compiled epochs;
* ``Variables`` travel through predict, evaluate, save/load, to_backend and a
  resumed checkpoint; stateless models are unchanged (``init`` returns params);
* a missing state, a state of another model, bad inputs and composites that do
  not pass the state raise clear errors and change nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import portable_nn as pnn

from ._support import FAST, SHAPES, assert_same_kind, dtypes_under_test, host, seeds

CE = pnn.losses.softmax_cross_entropy


def rel_err(actual: Any, desired: Any) -> float:
    desired = np.asarray(host(desired) if not isinstance(desired, np.ndarray) else desired, dtype=np.float64)
    return float(np.max(np.abs(host(actual) - desired)) / max(float(np.max(np.abs(desired))), 1e-300))


def random_variables(tb: Any, layer: pnn.BatchNorm, rng: np.random.Generator, dtype: str) -> pnn.Variables:
    """Variables with random gamma, beta, running mean and (positive) running var: init's would hide mistakes."""
    c = layer.features
    arr = lambda a: tb.asarray(a, dtype)  # noqa: E731
    return pnn.Variables(
        {"gamma": arr(rng.uniform(0.5, 2.0, c)), "beta": arr(rng.standard_normal(c))},
        {"mean": arr(rng.standard_normal(c)), "var": arr(rng.uniform(0.5, 2.0, c))},
    )


# ---------------------------------------------------------------- 1. gradcheck


@settings(FAST, max_examples=4)
@SHAPES
@given(
    shape=st.sampled_from([(3, 2), (2, 3, 4), (2, 2, 3, 3), (1, 3, 2, 2)]),
    momentum=st.sampled_from([0.1, 0.5]),
    seed=seeds,
)
def test_backprop_matches_finite_differences(tb: Any, shape: tuple[int, ...], momentum: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    layer = pnn.BatchNorm(shape[1], momentum=momentum)
    variables = random_variables(tb, layer, rng, tb.float)
    X = tb.asarray(rng.standard_normal(shape) * 3.0 + 1.0, tb.float)
    T = tb.asarray(rng.standard_normal(shape), tb.float)
    pnn.gradcheck(layer, variables, X, loss=pnn.losses.mean_squared_error, T=T, max_checks=16)


# ---------------------------------------------------------------- 2. torch is the oracle


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 5, 2)], ids=["2d", "nchw"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "inference"])
def test_matches_torch_batch_norm(tb: Any, shape: tuple[int, ...], train: bool) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    dtype = tb.float
    layer = pnn.BatchNorm(shape[1], momentum=0.3, eps=1e-3)
    variables = random_variables(tb, layer, rng, dtype)
    X_host, dY_host = rng.standard_normal(shape) * 2.0 + 0.5, rng.standard_normal(shape)
    Y, state, backprop = layer.apply_with_state(*variables, tb.asarray(X_host, dtype), train=train)
    dX, grads = backprop(tb.asarray(dY_host, dtype))

    t = lambda a: torch.tensor(host(a).astype(np.float64))  # noqa: E731
    gamma, beta = t(variables.params["gamma"]).requires_grad_(), t(variables.params["beta"]).requires_grad_()
    mean, var = t(variables.state["mean"]), t(variables.state["var"])
    Xt = t(tb.asarray(X_host, dtype)).requires_grad_()
    Yt = torch.nn.functional.batch_norm(Xt, mean, var, gamma, beta, training=train, momentum=0.3, eps=1e-3)
    Yt.backward(t(tb.asarray(dY_host, dtype)))  # mean and var were updated in place by torch when training
    tol = 1e-10 if dtype == "float64" else 1e-5
    for name, got, want in [
        ("Y", Y, Yt.detach()), ("dX", dX, Xt.grad), ("dgamma", grads["gamma"], gamma.grad),
        ("dbeta", grads["beta"], beta.grad), ("running mean", state["mean"], mean), ("running var", state["var"], var),
    ]:
        assert rel_err(got, want.numpy()) <= tol, f"{name}: {rel_err(got, want.numpy()):.3g}"
        assert_same_kind(got, Y, name)
    if not train:
        assert state is variables.state


# ---------------------------------------------------------------- 3. fit with a model state, against NumPy


def bn_cnn() -> pnn.Sequential:
    """(8, 1, 5, 5) -> conv (no bias: BatchNorm removes it) -> BN -> pool -> conv -> GAP -> BN (2-D) -> logits."""
    return pnn.Sequential(
        pnn.Conv2D(1, 3, 2, bias=False),
        pnn.BatchNorm(3),
        pnn.ReLU(),
        pnn.MaxPool2D(2),
        pnn.Conv2D(3, 4, 2, padding="same"),
        pnn.ReLU(),
        pnn.GlobalAvgPool2D(),
        pnn.BatchNorm(4, momentum=0.5),
        pnn.Linear(4, 3),
    )


def test_bn_cnn_fit_agrees_with_numpy_params_and_state(tb: Any) -> None:
    rng = np.random.default_rng(11)
    X_host, labels = rng.standard_normal((12, 1, 5, 5)), rng.integers(0, 3, 12)
    model = bn_cnn()
    for dtype in dtypes_under_test(tb):
        tol = 1e-12 if dtype == "float64" else 1e-5
        kwargs: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.SGD(lr=0.2), epochs=2, batch_size=6,
                                      progress=False)  # 4 steps, as the float32 bound is for a few steps
        ref, ref_history = pnn.fit(model, model.init(0, backend="numpy", dtype=dtype), X_host, labels, **kwargs)
        variables = tb.init(model, dtype=dtype)
        got, history = pnn.fit(model, variables, tb.asarray(X_host, dtype), tb.asarray(labels), **kwargs)
        assert type(got) is pnn.Variables
        np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=tol)
        for (path, p), (_, r) in zip(pnn.tree_paths(got), pnn.tree_paths(ref), strict=True):
            assert_same_kind(p, variables.params[0]["W"], f"{dtype} {path}")
            assert rel_err(p, r) <= tol, f"{dtype} {path}: {rel_err(p, r):.3g}"
        moved = rel_err(ref.state[1]["var"], np.ones(3))
        assert moved > 1e-3, "the running statistics did not move"
        assert ref_history["loss"][-1] < ref_history["loss"][0]


def test_predict_and_evaluate_use_the_running_statistics(tb: Any) -> None:
    rng = np.random.default_rng(2)
    layer = pnn.BatchNorm(3)
    model = pnn.Sequential(layer, pnn.Linear(3, 2))
    variables = tb.init(model)
    bn = random_variables(tb, layer, rng, tb.float)
    variables = pnn.Variables([bn.params, variables.params[1]], [bn.state, {}])
    X_host = rng.standard_normal((6, 3))
    Y = pnn.predict(model, variables, tb.asarray(X_host, tb.float), batch_size=4)
    g, b, m, v = (host(a) for a in (*bn.params.values(), *bn.state.values()))
    W, c = host(variables.params[1]["W"]), host(variables.params[1]["b"])
    want = ((X_host - m) / np.sqrt(v + 1e-5) * g + b) @ W + c
    assert rel_err(Y, want) <= (1e-12 if tb.float == "float64" else 1e-5)
    np.testing.assert_array_equal(host(model(variables, tb.asarray(X_host, tb.float))), host(Y))
    loss, _ = pnn.evaluate(model, variables, tb.asarray(X_host, tb.float), tb.asarray(want, tb.float),
                           loss=pnn.losses.mean_squared_error, batch_size=4)
    assert loss <= 1e-10


def test_variables_survive_save_load_and_to_backend(tb: Any, tmp_path: Path) -> None:
    model = bn_cnn()
    variables, _ = pnn.fit(model, tb.init(model), tb.asarray(np.random.default_rng(0).standard_normal((6, 1, 5, 5)),
                           tb.float), tb.asarray(np.arange(6) % 3), loss=CE, optimizer=pnn.optim.SGD(0.1),
                           epochs=1, batch_size=3, progress=False)
    pnn.save(tmp_path / "v.safetensors", variables)
    loaded = pnn.load(tmp_path / "v.safetensors", like=variables)
    moved = pnn.to_backend(variables, "numpy")
    for other in (loaded, moved):
        assert type(other) is pnn.Variables
        for a, b in zip(pnn.tree_leaves(other), pnn.tree_leaves(variables), strict=True):
            np.testing.assert_array_equal(host(a), host(b))
    assert type(pnn.load(tmp_path / "v.safetensors")) is pnn.Variables  # without like=, too


def test_resumed_run_with_a_model_state_equals_the_uninterrupted_one(tb: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    X, y = tb.asarray(rng.standard_normal((10, 1, 5, 5)), tb.float), tb.asarray(rng.integers(0, 3, 10))
    model = bn_cnn()
    kwargs: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.Adam(0.01), batch_size=4, progress=False)
    straight, h1 = pnn.fit(model, tb.init(model), X, y, epochs=3, **kwargs)
    ckpt = tmp_path / "run.safetensors"
    pnn.fit(model, tb.init(model), X, y, epochs=1, checkpoint=ckpt, **kwargs)
    resumed, h2 = pnn.fit(model, tb.init(model), X, y, epochs=3, checkpoint=ckpt, resume=True, **kwargs)
    assert h2["loss"] == pytest.approx(h1["loss"], rel=1e-12 if tb.float == "float64" else 1e-5)
    for (path, a), b in zip(pnn.tree_paths(resumed), pnn.tree_leaves(straight), strict=True):
        assert rel_err(a, b) <= (1e-12 if tb.float == "float64" else 1e-5), path


def test_stateless_models_are_unchanged() -> None:
    model = pnn.Sequential(pnn.Linear(2, 3), pnn.LayerNorm(3), pnn.Dropout(0.1))
    assert type(model.init(0, backend="numpy")) is list
    assert not pnn.layers.base.has_state(model) and pnn.layers.base.has_state(bn_cnn())


# ---------------------------------------------------------------- 4. clear errors, nothing changed


def test_a_missing_state_raises_before_any_work(tb: Any) -> None:
    model = bn_cnn()
    variables = tb.init(model)
    X, y = tb.asarray(np.zeros((4, 1, 5, 5)), tb.float), tb.asarray(np.zeros(4, dtype=np.int64))
    before = [host(a) for a in pnn.tree_leaves(variables)]
    for call in (
        lambda: pnn.fit(model, variables.params, X, y, loss=CE, optimizer=pnn.optim.SGD(0.1), progress=False),
        lambda: pnn.predict(model, variables.params, X),
        lambda: model(variables.params, X),
    ):
        with pytest.raises(TypeError, match=r"layer 1: BatchNorm\(3\) keeps running statistics.*Variables"):
            call()
    with pytest.raises(ValueError, match=r"BatchNorm\(3\): its state .* is missing"):
        model.layers[1].apply_with_state(variables.params[1], None, tb.asarray(np.ones((2, 3)), tb.float))
    with pytest.raises(ValueError, match=r"BatchNorm\(3\): its state is empty .* must override init_state"):
        model.layers[1].apply_with_state(variables.params[1], {}, tb.asarray(np.ones((2, 3)), tb.float))
    for a, b in zip(pnn.tree_leaves(variables), before, strict=True):
        np.testing.assert_array_equal(host(a), b)


def test_a_state_of_another_model_is_refused(tb: Any) -> None:
    model, other = bn_cnn(), pnn.Sequential(pnn.BatchNorm(5), pnn.Linear(5, 3))
    mine, theirs = tb.init(model), tb.init(other)
    X = tb.asarray(np.zeros((4, 1, 5, 5)), tb.float)
    with pytest.raises(ValueError, match=r"state must be a list with one entry per layer \(9\), got 2"):
        model(pnn.Variables(mine.params, theirs.state), X)
    state = list(mine.state)
    state[1] = theirs.state[0]
    with pytest.raises(ValueError, match=r"layer 1: BatchNorm\(3\): the state does not fit.*mean \(3,\).*\(5,\)"):
        model(pnn.Variables(mine.params, state), X)


@pytest.mark.parametrize(
    "shape, train, match",
    [
        ((4, 2), True, r"\(batch, 3\) or \(batch, 3, \.\.\.\).*got shape \(4, 2\)"),
        ((4,), False, r"\(batch, 3\) or \(batch, 3, \.\.\.\).*got shape \(4,\)"),
        ((1, 3), True, r"more than one value per channel.*\(1, 3\)"),
        ((1, 3, 1, 1), True, r"more than one value per channel"),
    ],
)
def test_bad_input_raises_a_clear_error(tb: Any, shape: tuple[int, ...], train: bool, match: str) -> None:
    layer = pnn.BatchNorm(3)
    variables = tb.init(layer)
    with pytest.raises(ValueError, match=match):
        layer.apply_with_state(*variables, tb.asarray(np.ones(shape), tb.float), train=train)
    layer.apply_with_state(*variables, tb.asarray(np.ones((1, 3)), tb.float))  # one row is fine at inference


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(features=0), r"BatchNorm: features must be >= 1, got 0"),
        (dict(features=3, momentum=1.5), r"BatchNorm.*momentum"),
        (dict(features=3, eps=0.0), r"BatchNorm.*eps"),
    ],
)
def test_bad_configuration_raises(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        pnn.BatchNorm(**kwargs)


def test_a_composite_that_does_not_pass_the_state_is_refused(tb: Any) -> None:
    class Residual(pnn.Layer):  # a user composite written before model states existed
        def __init__(self) -> None:
            self.inner = pnn.BatchNorm(3)

        def init_params(self, rng: Any, be: Any, dtype: str) -> Any:
            return self.inner.init_params(rng, be, dtype)

        def apply(self, params: Any, X: Any, *, train: bool = False, rng: Any = None) -> Any:
            Y, backprop = self.inner.apply(params, X, train=train)
            return X + Y, backprop

    model = Residual()
    variables = tb.init(model)
    with pytest.raises(TypeError, match=r"contains layers with a model state .* does not override apply_with_state"):
        model(variables, tb.asarray(np.ones((2, 3)), tb.float))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's overflow notes on the way to the NaN
def test_bn_model_state_moves_and_nan_stops_with_finite_variables(tb: Any) -> None:
    model = pnn.Sequential(pnn.Linear(2, 3), pnn.BatchNorm(3), pnn.Linear(3, 1))
    X = tb.asarray(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]), tb.float)
    Y = tb.asarray(np.array([[1.0], [1e30], [-1e30], [0.0]]), tb.float)
    with pytest.raises(pnn.NonFiniteError) as info:
        pnn.fit(model, tb.init(model), X, Y, loss=pnn.losses.mean_squared_error, optimizer=pnn.optim.SGD(1e10),
                epochs=5, batch_size=2, progress=False)
    assert type(info.value.params) is pnn.Variables
    assert all(np.isfinite(host(a)).all() for a in pnn.tree_leaves(info.value.params))


def test_sklearn_estimators_refuse_a_stateful_model_clearly() -> None:
    pytest.importorskip("sklearn")
    from portable_nn.sklearn import NeuralNetClassifier

    model = pnn.Sequential(pnn.Linear(4, 3), pnn.BatchNorm(3), pnn.Linear(3, 2))
    X, y = np.random.default_rng(0).standard_normal((10, 4)), np.arange(10) % 2
    with pytest.raises(TypeError, match=r"NeuralNetClassifier: .*BatchNorm.*stateless models only.*pnn.fit"):
        NeuralNetClassifier(model=model, epochs=1, backend="numpy").fit(X, y)


def test_guide_batchnorm_example_runs_and_keeps_its_promises(tmp_path: Path, monkeypatch: Any) -> None:
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "guide" / "cnn.md").read_text()
    found = re.search(r"<!-- docs-batchnorm -->\n```python\n(.*?)\n```", text, re.S)
    assert found, "docs/guide/cnn.md lost its BatchNorm example (the marker <!-- docs-batchnorm -->)"
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {}
    with pnn.use_backend("numpy"):
        exec(found.group(1), scope)
    variables = scope["variables"]
    assert type(variables) is pnn.Variables and set(variables.state[1]) == {"mean", "var"}
    assert tuple(scope["Y"].shape) == (32, 3) and len(scope["history"]["loss"]) == 2
    assert type(pnn.load(tmp_path / "bn.safetensors")) is pnn.Variables


@pytest.mark.parametrize("n, batch_size, which", [(9, 4, "the epoch's last batch"), (5, 1, "every batch"),
                                                  (1, 4, "every batch")])
def test_a_one_row_batch_raises_before_any_step_naming_the_batch_size(
    tb: Any, n: int, batch_size: int, which: str
) -> None:
    # n % batch_size == 1 used to train until the last batch, then raise BatchNorm's "at least 2 rows"
    # (the work lost, the message silent about batch_size); now fit checks it before the first step.
    model = pnn.Sequential(pnn.Linear(3, 4), pnn.BatchNorm(4), pnn.Linear(4, 2))
    variables = tb.init(model)
    X, y = tb.asarray(np.ones((n, 3)), tb.float), tb.asarray(np.zeros(n, dtype=np.int64))
    before = [host(a) for a in pnn.tree_leaves(variables)]
    steps = []

    class Count:
        def on_epoch_end(self, epoch: int, history: Any, params: Any) -> None:
            steps.append(epoch)

    with pytest.raises(ValueError, match=rf"with {n} rows? and batch_size={batch_size}, {which} has 1 row.*"
                                         r"BatchNorm\(4\).*more than one value per channel"):
        pnn.fit(model, variables, X, y, loss=CE, optimizer=pnn.optim.SGD(0.1), batch_size=batch_size,
                callbacks=[Count()], progress=False)
    assert steps == []
    for a, b in zip(pnn.tree_leaves(variables), before, strict=True):
        np.testing.assert_array_equal(host(a), b)


def test_a_one_row_last_batch_of_spatial_data_still_trains(tb: Any) -> None:
    # BatchNorm on (N, C, L) has L values per channel in a 1-row batch: that trains, and is not refused.
    model = pnn.Sequential(pnn.BatchNorm(2), pnn.Flatten(), pnn.Linear(6, 2))
    X, y = tb.asarray(np.arange(30.0).reshape(5, 2, 3), tb.float), tb.asarray(np.zeros(5, dtype=np.int64))
    variables, history = pnn.fit(model, tb.init(model), X, y, loss=CE, optimizer=pnn.optim.SGD(0.1),
                                 batch_size=4, epochs=1, progress=False)
    assert isinstance(variables, pnn.Variables) and len(history["loss"]) == 1


def test_load_and_optimizers_name_variables_given_where_params_go(tb: Any, tmp_path: Path) -> None:
    # load(like=variables.params) of a Variables file said "param '2' is missing from the file", and
    # Adam.init(variables) failed later with "grads do not have the structure of params".
    model = pnn.Sequential(pnn.Linear(3, 4), pnn.BatchNorm(4))
    variables = tb.init(model)
    pnn.save(tmp_path / "v.safetensors", variables)
    pnn.save(tmp_path / "p.safetensors", variables.params)
    with pytest.raises(pnn.CheckpointError, match=r"holds the Variables \(params, state\).*like=model.init"):
        pnn.load(tmp_path / "v.safetensors", like=variables.params)
    with pytest.raises(pnn.CheckpointError, match=r"holds params without a model state.*like=variables.params"):
        pnn.load(tmp_path / "p.safetensors", like=variables)
    assert type(pnn.load(tmp_path / "v.safetensors", like=variables)) is pnn.Variables
    for opt in (pnn.optim.Adam(0.1), pnn.optim.SGD(0.1, momentum=0.9)):
        with pytest.raises(TypeError, match=r"init: got the Variables.*opt.init\(variables.params\)"):
            opt.init(variables)
