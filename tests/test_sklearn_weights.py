"""portable_nn.sklearn: sample_weight and class_weight with scikit-learn's meaning, and the estimators on the
one training engine (Ctrl-C, JAX's compiled epochs shared by equal estimators)."""

from __future__ import annotations

import os
import signal
import warnings

import numpy as np
import pytest

import portable_nn as pnn

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.metrics import recall_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.utils.class_weight import compute_class_weight  # noqa: E402

from portable_nn.sklearn import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor  # noqa: E402


def _spec(tb):
    return f"{tb.be.name}:{tb.be.device_label}"


def _tol(tb):
    return 1e-10 if tb.float == "float64" else 1e-5


def _data(n=60, seed=0):
    """Standardized iris rows (all three classes), and their targets."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    rows = np.random.default_rng(seed).permutation(150)[:n]
    return X[rows], y[rows]


def _params(est):
    return [pnn.to_numpy(a) for layer in est.params_ for a in layer.values()]


def _quiet(fit, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit(*args, **kwargs)


def _estimators(tb):
    """One of each estimator, one full batch per epoch (so rows may be dropped or repeated), same init."""
    kw = dict(random_state=0, backend=_spec(tb), dtype=tb.float)
    return [
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, alpha=0.01, **kw),
        MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, solver="sgd", alpha=0.01, **kw),
        NeuralNetClassifier(epochs=3, batch_size=500, optimizer=pnn.optim.Adam(0.01), **kw),
        NeuralNetRegressor(epochs=3, batch_size=500, optimizer=pnn.optim.SGD(0.05), **kw),
    ]


def _target(est, y):
    return y if "Classifier" in type(est).__name__ else y * 0.5 - 0.5


# --- sample_weight: dropping and repeating rows -----------------------------------------------------


def test_sample_weight_zero_drops_the_row_and_integer_k_is_k_copies(tb):
    """Weights 0-3: the fit equals one on the rows repeated by their weights (one full batch, the same initial
    weights): the same loss_curve_ and params, to rounding. Fails before sample_weight existed.

    Both fits have 60 rows and both are weighted (zero-weight rows pad the first, unit weights the second),
    so JAX compiles one step per estimator, shared with test_class_weight_is_a_factor_of_sample_weight; JAX
    runs the two classifiers only (the regressors' weighted losses run there in the scikit-learn comparison)."""
    X, y = _data(40)
    w = np.random.default_rng(1).permutation(np.tile([0, 1, 2, 3], 10))  # 60 copies in all
    X_w, y_w, w_w = np.r_[X, X[:20]], np.r_[y, y[:20]], np.r_[w, np.zeros(20)]
    X_c, y_c = np.repeat(X, w, axis=0), np.repeat(y, w)
    assert set(y_c) == {0, 1, 2}
    estimators = _estimators(tb) if tb.be.name != "jax" else _estimators(tb)[::2]
    for est in estimators:
        weighted = _quiet(clone(est).fit, X_w, _target(est, y_w), sample_weight=w_w)
        copies = _quiet(clone(est).fit, X_c, _target(est, y_c), sample_weight=np.ones(60))
        np.testing.assert_allclose(weighted.loss_curve_, copies.loss_curve_, rtol=_tol(tb), err_msg=repr(est))
        for a, b in zip(_params(weighted), _params(copies), strict=True):
            np.testing.assert_allclose(a, b, atol=_tol(tb), err_msg=repr(est))


# --- sample_weight: scikit-learn's MLP --------------------------------------------------------------


def test_sample_weight_equals_sklearn_sgd_with_minibatches(tb):
    """Same random_state and weights, minibatches of 16 rows, SGD: the weighted loss, the L2 term divided by
    the batch's weight, loss_curve_ (batch losses by their rows) and the params equal scikit-learn's; the
    same for partial_fit (its sample_weight comes before classes, as there)."""
    X, y = _data(90)
    w = np.random.default_rng(2).uniform(0.1, 3.0, 90)
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", momentum=0.5, max_iter=3, random_state=0, alpha=0.01,
              batch_size=16)
    # None: the minibatches are scikit-learn's (no draw of a dropout seed between); JAX: weighted only (each compiles)
    for weights in (None, w) if tb.be.name != "jax" else (w,):
        ours = _quiet(MLPClassifier(backend=_spec(tb), dtype=tb.float, **kw).fit, X, y, sample_weight=weights)
        ref = _quiet(SkMLPClassifier(**kw).fit, X, y, sample_weight=weights)
        np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=_tol(tb))
        for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_, strict=True):
            np.testing.assert_allclose(a, b, atol=_tol(tb))
    if tb.be.name == "jax":
        return  # partial_fit's path is not JAX's own: spare a compilation (partial_fit on JAX: the Ctrl-C test)
    ours = MLPRegressor(backend=_spec(tb), dtype=tb.float, **kw)
    ref = SkMLPRegressor(**kw)
    for _ in range(2):
        ours.partial_fit(X, X[:, 0] - y, w)
        ref.partial_fit(X, X[:, 0] - y, w)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=_tol(tb))
    np.testing.assert_allclose(ours.coefs_[0], ref.coefs_[0], atol=_tol(tb))


def test_sample_weight_early_stopping_scores_like_sklearn(tb):
    """With early_stopping the validation split keeps its rows' weights and is scored with them."""
    if tb.spec != "numpy":
        pytest.skip("compared with scikit-learn's Adam (epsilon placed differently) in the numpy session only")
    X, y = _data(150)
    w = np.random.default_rng(3).uniform(0.2, 2.0, 150)
    kw = dict(hidden_layer_sizes=(8,), learning_rate_init=0.01, max_iter=200, random_state=1,
              early_stopping=True, n_iter_no_change=2)
    ours = MLPClassifier(dtype="float64", **kw).fit(X, y, sample_weight=w)
    ref = SkMLPClassifier(**kw).fit(X, y, sample_weight=w)
    assert ours.n_iter_ == ref.n_iter_ < 200
    assert ours.validation_scores_ == pytest.approx(ref.validation_scores_, rel=1e-12)
    assert 0 < min(ours.validation_scores_) and max(ours.validation_scores_) <= 1


def test_sample_weight_validation(tb):
    X, y = _data()
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, backend=_spec(tb))
    with pytest.raises(ValueError, match="at least one non-zero"):
        clf.fit(X, y, sample_weight=np.zeros(60))
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        clf.fit(X, y, sample_weight=-np.ones(60))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(30,\), expected \(60,\)"):
        clf.fit(X, y, sample_weight=np.ones(30))

    def plain(Y, T):
        return pnn.losses.mean_squared_error(Y, T)

    with pytest.raises(TypeError, match="NeuralNetRegressor: sample_weight and class_weight need a loss"):
        NeuralNetRegressor(loss=plain, backend=_spec(tb)).fit(X, y * 1.0, sample_weight=np.ones(60))


# --- class_weight ----------------------------------------------------------------------------------


def test_class_weight_is_a_factor_of_sample_weight(tb):
    """class_weight (a dict, "balanced") weighs each row by its class's weight times its sample weight, as
    LogisticRegression combines them ("balanced" counts the rows by their sample weights). Fails before
    class_weight existed."""
    X, y = _data()
    w = np.random.default_rng(4).uniform(0.5, 2.0, 60)
    cw = {0: 3.0, 1: 0.5, 2: 1.0}
    balanced = compute_class_weight("balanced", classes=np.arange(3), y=y, sample_weight=w)
    for est in _estimators(tb)[::2]:
        for class_weight, factors in ((cw, np.array([3.0, 0.5, 1.0])), ("balanced", balanced)):
            got = _quiet(clone(est).set_params(class_weight=class_weight).fit, X, y, sample_weight=w)
            want = _quiet(clone(est).fit, X, y, sample_weight=w * factors[y])
            assert got.get_params()["class_weight"] == class_weight
            np.testing.assert_allclose(got.loss_curve_, want.loss_curve_, rtol=_tol(tb), err_msg=repr(est))
            for a, b in zip(_params(got), _params(want), strict=True):
                np.testing.assert_allclose(a, b, atol=_tol(tb), err_msg=repr(est))
    assert clone(MLPClassifier(class_weight="balanced")).class_weight == "balanced"


def test_class_weight_balanced_raises_minority_recall(tb):
    """On a 90/10 problem, class_weight="balanced" raises the minority class's test recall (the numbers are in
    the docs' guide: scikit-learn's own MLP has no class_weight)."""
    X, y = make_classification(n_samples=600, n_features=8, n_informative=4, weights=[0.9, 0.1], flip_y=0.02,
                               random_state=0)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)
    recall = []
    for cw in ({0: 1.0, 1: 1.0}, "balanced"):  # uniform weights are class_weight=None (one compiled step on JAX)
        clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=60, learning_rate_init=0.01, random_state=0,
                            class_weight=cw, backend=_spec(tb), dtype=tb.float)
        _quiet(clf.fit, Xtr, ytr)
        recall.append(recall_score(yte, clf.predict(Xte)))
    uniform, balanced = recall
    assert balanced >= uniform + 0.1, recall


def test_class_weight_errors(tb):
    X, y = _data()
    multilabel = np.c_[y == 0, y == 1].astype(int)
    with pytest.raises(ValueError, match="class_weight is not supported for multilabel targets"):
        MLPClassifier(class_weight={0: 1.0, 1: 2.0}, backend=_spec(tb)).fit(X, multilabel)
    with pytest.raises(ValueError, match="class_weight='balanced' is not supported for partial_fit"):
        NeuralNetClassifier(class_weight="balanced", backend=_spec(tb)).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="class_weight"):
        MLPClassifier(class_weight="equal").fit(X, y)  # scikit-learn's parameter validation
    with pytest.raises(ValueError, match="classes"):
        MLPClassifier(class_weight={0: 1.0, 7: 2.0}, max_iter=1, backend=_spec(tb)).fit(X, y)
    with pytest.raises(ValueError, match=r"cannot weigh the classes \[0\]: their rows have a total sample weight"):
        MLPClassifier(class_weight="balanced", backend=_spec(tb)).fit(X, y, sample_weight=(y > 0) * 1.0)


# --- the training engine under the estimators ----------------------------------------------------


def test_ctrl_c_keeps_the_last_steps_params_and_optimizer_state(tb):
    """Ctrl-C stops between steps (compiled epochs on JAX): scikit-learn's warning, the params after the last
    completed step and the optimizer state that goes with them; partial_fit continues from both."""
    X, y = _data()
    calls = []

    def interrupting(Y, T):
        if not calls:  # the first call (at tracing time on JAX): the step or the epoch runs to its end
            os.kill(os.getpid(), signal.SIGINT)
        calls.append(1)
        return pnn.losses.mean_squared_error(Y, T)

    reg = NeuralNetRegressor(loss=interrupting, epochs=5, batch_size=20, random_state=0, backend=_spec(tb),
                             dtype=tb.float)
    with pytest.warns(UserWarning, match="Training interrupted by user."):
        reg.fit(X, y * 1.0)
    steps = int(reg._opt_state.count)
    epochs_done = len(reg.loss_curve_)
    assert steps == (3 * epochs_done if tb.be.name == "jax" else 1) and reg.n_iter_ == epochs_done
    init = NeuralNetRegressor(epochs=1, random_state=0, backend=_spec(tb), dtype=tb.float)._build(
        (4,), 1, tb.be, tb.float, np.random.RandomState(0))[1]
    assert not np.allclose(pnn.to_numpy(reg.params_[0]["W"]), pnn.to_numpy(init[0]["W"]))
    reg.partial_fit(X, y * 1.0)
    assert int(reg._opt_state.count) == steps + 3


def test_jax_compiles_once_for_equal_estimators(tb):
    """Clones (a new model object of the same configuration per fit) reuse JAX's compiled epochs."""
    if tb.be.name != "jax":
        pytest.skip("JAX's compiled epochs only")
    X, y = _data()
    traced = []

    @pnn.losses.reduces("mean")
    def counting(Y, T):
        traced.append(1)  # runs when JAX traces the step, not when it runs
        return pnn.losses.softmax_cross_entropy(Y, T)

    clf = NeuralNetClassifier(loss=counting, epochs=3, batch_size=16, random_state=0, backend=_spec(tb))
    clf.fit(X, y)
    first = len(traced)
    clone(clf).fit(X, y)
    clone(clf).set_params(random_state=1).fit(X, y)
    assert first > 0 and len(traced) == first


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor])
def test_sample_weight_is_declared_where_scikit_learn_looks_for_it(Estimator: type) -> None:
    """scikit-learn 1.6+ has no tag for sample weights: check_estimator and meta-estimators (Pipeline, GridSearchCV
    routing) look at fit's signature (has_fit_parameter), and partial_fit's where there is one."""
    from sklearn.utils.validation import has_fit_parameter

    est = Estimator()
    assert has_fit_parameter(est, "sample_weight")
    if hasattr(est, "partial_fit"):
        import inspect

        assert "sample_weight" in inspect.signature(est.partial_fit).parameters
