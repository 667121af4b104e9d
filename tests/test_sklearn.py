"""portable_nn.sklearn: scikit-learn's own estimator checks (numpy session), its MLP's semantics, the
backends, array API dispatch (torch and array-api-strict sessions), and the places users put estimators."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import array_api_compat
import numpy as np
import pytest

import portable_nn as pnn

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from portable_nn.sklearn import (  # noqa: E402
    MLPClassifier,
    MLPRegressor,
    NeuralNetClassifier,
    NeuralNetRegressor,
)

NUMPY_ONLY = "runs in the numpy session only (NumPy inputs; the backends are covered by the tests that use tb)"

# The instances scikit-learn's checks run on: the defaults, except fewer epochs than max_iter=200
# (scikit-learn's own test suite runs its MLPs with max_iter=100 too) and smaller hidden layers.
CHECKED = [
    MLPClassifier(hidden_layer_sizes=(16,), max_iter=40, learning_rate_init=0.01),
    MLPRegressor(hidden_layer_sizes=(16,), max_iter=40, learning_rate_init=0.01),
    NeuralNetClassifier(optimizer=pnn.optim.Adam(0.01), epochs=15),
    NeuralNetRegressor(optimizer=pnn.optim.Adam(0.01), epochs=15),
]
# scikit-learn checks expected to fail, with the reason. Training in float32 (the default dtype), fitting with
# integer sample weights and fitting on repeated rows agree to float32 rounding (relative 1e-7 to 1e-6: the sums
# over rows run in another order), not to the check's rtol of 1e-7 (it passes or not by luck of rounding);
# test_sample_weight_equivalence_in_float64 runs the same check on float64 instances, where it must pass.
FLOAT32_ROUNDING = "float32 training agrees to float32 rounding only; the float64 test runs this check"
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    type(est).__name__: {"check_sample_weight_equivalence_on_dense_data": FLOAT32_ROUNDING} for est in CHECKED
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """scikit-learn's checks are generated in the numpy session only; elsewhere one skipped test says why."""
    if "check" not in metafunc.fixturenames:
        return
    if metafunc.config.getoption("--backend") == "numpy":
        mark = parametrize_with_checks(
            CHECKED, expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS.get(type(est).__name__, {})
        )
        metafunc.parametrize(*mark.args, **mark.kwargs)
    else:
        metafunc.parametrize("estimator, check", [pytest.param(None, None, marks=pytest.mark.skip(NUMPY_ONLY))])


def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_sample_weight_equivalence_in_float64(tb):
    """scikit-learn's check that integer sample weights equal repeated rows (and zero weights dropped rows),
    on the checked instances trained in float64."""
    _numpy_only(tb)
    from sklearn.utils.estimator_checks import check_sample_weight_equivalence_on_dense_data

    for est in CHECKED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            check_sample_weight_equivalence_on_dense_data(type(est).__name__, clone(est).set_params(dtype="float64"))


# --- data -------------------------------------------------------------------------------------


def _iris():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return (X - X.mean(axis=0)) / X.std(axis=0), y


def _spec(tb):
    """tb's backend as the spec string the estimators take (a Backend object cannot be deep-copied by clone)."""
    return f"{tb.be.name}:{tb.be.device_label}"


def _host(tb, X):
    """NumPy input (read-only in the numpy-readonly session): without dispatch scikit-learn takes host data."""
    return tb.asarray(X) if tb.be.name == "numpy" else X


def _numpy_only(tb):
    if tb.spec != "numpy":
        pytest.skip(NUMPY_ONLY)


def _same_place(a, ref):
    assert pnn.namespace(a) is pnn.namespace(ref)
    assert array_api_compat.device(a) == array_api_compat.device(ref)


# --- scikit-learn's MLP, reproduced -------------------------------------------------------------


def test_sgd_equals_sklearn_from_the_same_random_state(tb):
    """Same random_state: same initial weights, batches, loss, L2 penalty and SGD step as scikit-learn."""
    X, y = _iris()
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", momentum=0.5, max_iter=3, random_state=0, alpha=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(backend=_spec(tb), dtype=tb.float, **kw).fit(_host(tb, X), y)
        ref = SkMLPClassifier(**kw).fit(X, y)
    tol = 1e-10 if tb.float == "float64" else 1e-5
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=tol)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_, strict=True):
        assert isinstance(a, np.ndarray)
        np.testing.assert_allclose(a, b, atol=tol)
    _same_place(ours.params_[0]["W"], tb.be.asarray(np.zeros(1, dtype=np.float32)))


def test_adam_tol_and_early_stopping_follow_sklearn(tb):
    _numpy_only(tb)
    X, y = _iris()
    for kw in (dict(tol=1e-2, n_iter_no_change=3), dict(early_stopping=True, n_iter_no_change=2)):
        args = dict(hidden_layer_sizes=(8,), learning_rate_init=0.01, max_iter=200, random_state=1, **kw)
        ours = MLPClassifier(dtype="float64", **args).fit(X, y)
        ref = SkMLPClassifier(**args).fit(X, y)
        assert ours.n_iter_ == ref.n_iter_ < 200
        np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-4)
        if "early_stopping" in kw:
            assert ours.best_loss_ is None and ours.validation_scores_ == ref.validation_scores_
            assert ours.best_validation_score_ == ref.best_validation_score_
        else:
            assert ours.best_loss_ == pytest.approx(ref.best_loss_, rel=1e-4)


def test_regressor_multioutput_and_targets_like_sklearn(tb):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    Y = np.c_[X @ [1.0, -1.0, 0.5, 0.0], X[:, 0] * X[:, 1]]
    kw = dict(hidden_layer_sizes=(16,), max_iter=4, random_state=0, solver="sgd", learning_rate_init=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPRegressor(backend=_spec(tb), dtype=tb.float, **kw).fit(_host(tb, X), Y)
        ref = SkMLPRegressor(**kw).fit(X, Y)
        one = MLPRegressor(backend=_spec(tb), **kw).fit(X, Y[:, 0])
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-4)
    pred = ours.predict(X)
    assert isinstance(pred, np.ndarray) and pred.shape == (60, 2) and pred.dtype == np.float64
    np.testing.assert_allclose(pred, ref.predict(X), atol=1e-4)
    assert one.predict(X).shape == (60,) and one.n_outputs_ == 1
    assert ours.predict(X.astype(np.float32)).dtype == np.float32  # outputs take X's float dtype


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_classifier_targets(tb, kind):
    X, y = _iris()
    if kind == "binary":
        y = np.where(y == 1, "versicolor", "other")
    elif kind == "multilabel":
        y = np.c_[y == 0, y == 1, y != 1].astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=60, learning_rate_init=0.02, random_state=0,
                        backend=_spec(tb), dtype=tb.float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    P, pred = clf.predict_proba(X), clf.predict(X)
    assert clf.score(X, y) > 0.8
    if kind == "multilabel":
        assert clf.out_activation_ == "logistic" and P.shape == (150, 3) and pred.dtype.kind == "i"
        np.testing.assert_array_equal(pred, (P > 0.5).astype(int))
    else:
        assert list(clf.classes_) == sorted(set(y.tolist()))
        assert P.shape == (150, len(clf.classes_)) and np.allclose(P.sum(axis=1), 1.0)
        np.testing.assert_array_equal(pred, clf.classes_[np.argmax(P, axis=1)])
        assert clf.n_outputs_ == (1 if kind == "binary" else 3)
        np.testing.assert_allclose(clf.predict_log_proba(X), np.log(P), rtol=1e-6)


def test_partial_fit_classes_unknown_labels_and_errors(tb):
    X, y = _iris()
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, backend=_spec(tb), dtype=tb.float)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])  # the first batch lacks class 2
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 2 and clf.predict_proba(X).shape == (150, 3)
    with pytest.raises(ValueError, match="`y` has classes not in `self.classes_`"):
        clf.partial_fit(X, np.where(y == 2, 7, y))
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 4"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="at least 2 classes.*got 1 class"):
        MLPClassifier().fit(X, np.zeros(150))
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(X, y.astype(float))


def test_warm_start_continues_and_fit_restarts(tb):
    X, y = _iris()
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0, backend=_spec(tb), dtype=tb.float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cold = MLPClassifier(**kw).fit(X, y)
        again = clone(cold).fit(X, y).fit(X, y)
        warm = MLPClassifier(warm_start=True, **kw).fit(X, y).fit(X, y)
    assert again.loss_curve_ == cold.loss_curve_  # fit starts over, deterministically
    assert len(warm.loss_curve_) == 10 and warm.loss_curve_[:5] == cold.loss_curve_
    assert warm.loss_curve_[5] < cold.loss_curve_[-1]


# --- the generic wrappers ---------------------------------------------------------------------


class Scale(pnn.Layer):
    """A layer of our own with one learned scale per feature, and a CNN-style 4-d input."""

    def __init__(self, features: int) -> None:
        self.features = features

    def init_params(self, rng, be, dtype):
        return {"s": be.asarray(np.ones(self.features, dtype=dtype))}

    def apply(self, params, X, *, train=False, rng=None):
        (s,) = pnn.layers.base.check_params(self, params, {"s": (self.features,)})
        xp = pnn.namespace(X)
        Xf = xp.reshape(X, (X.shape[0], self.features))  # (n, 1, 2, 2) images -> (n, 4)

        def backprop(dY, *, need_dX=True):
            return (xp.reshape(dY * s, X.shape) if need_dX else None), {"s": xp.sum(dY * Xf, axis=0)}

        return Xf * s, backprop


def test_generic_wrappers_take_any_model(tb):
    X, y = _iris()
    images = X.reshape(-1, 1, 2, 2)  # (n, C, H, W): the generic wrappers accept more than 2 axes
    # Dropout's host masks run the portable code op by op: on JAX that compiles every op anew (~8 s)
    dropout = [pnn.Dropout(0.1)] if tb.be.name != "jax" else []
    model = pnn.Sequential(Scale(4), pnn.Linear(4, 16), pnn.Tanh(), *dropout, pnn.Linear(16, 3))
    clf = NeuralNetClassifier(model, optimizer=pnn.optim.Adam(0.02), epochs=15, random_state=0,
                              backend=_spec(tb), dtype=tb.float).fit(images, y)
    assert clf.model_ is model and clf.score(images, y) > 0.8 and clf.n_iter_ == 15
    assert clf.predict_proba(images).shape == (150, 3)
    again = clone(clf).fit(images, y)
    np.testing.assert_array_equal(pnn.to_numpy(again.params_[-1]["W"]), pnn.to_numpy(clf.params_[-1]["W"]))

    def build(n_features, n_outputs):
        return pnn.Sequential(pnn.Linear(n_features, 8), pnn.ReLU(), pnn.Linear(8, n_outputs))

    reg = NeuralNetRegressor(build, optimizer=pnn.optim.Adam(0.01), epochs=20, random_state=0,
                             early_stopping=True,
                             backend=_spec(tb), dtype=tb.float).fit(X[:, :3], X[:, 3])
    assert reg.predict(X[:, :3]).shape == (150,) and reg.score(X[:, :3], X[:, 3]) > 0.5
    assert len(reg.validation_scores_) == 20
    with pytest.raises(ValueError, match=r"outputs of shape \(3,\) per row, but 2 are needed"):
        NeuralNetClassifier(pnn.Sequential(pnn.Linear(4, 3)), backend=_spec(tb)).fit(X, y > 0)
    with pytest.raises(ValueError, match="does not take X rows of shape"):
        NeuralNetRegressor(pnn.Sequential(pnn.Linear(5, 1)), backend=_spec(tb)).fit(X, y)


# --- array API dispatch -----------------------------------------------------------------------


def test_array_api_dispatch_stays_on_the_inputs_namespace_and_device(tb):
    if tb.be.name not in ("torch", "array_api_strict", "jax"):
        pytest.skip("array API dispatch is tested with torch, JAX and array-api-strict inputs, in their sessions")
    X, y = _iris()
    Xd, yd, yf = tb.asarray(X, dtype=tb.float), tb.asarray(y), tb.asarray(X[:, 0], dtype=tb.float)
    with sklearn.config_context(array_api_dispatch=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, learning_rate_init=0.05, random_state=0).fit(Xd, yd)
        reg = NeuralNetRegressor(epochs=3, random_state=0).fit(Xd[:, 1:], yf)
        P, pred, r = clf.predict_proba(Xd), clf.predict(Xd), reg.predict(Xd[:, 1:])
        assert clf.backend_ == _spec(tb)
        for a in (clf.params_[0]["W"], reg.params_[0]["W"], P, pred, r):
            _same_place(a, Xd)
        assert P.dtype == Xd.dtype and r.shape == (150,)
        # scikit-learn's accuracy_score casts to float64 under dispatch, which a float32-only device lacks
        assert (clf.score(Xd, yd) if "float64" in tb.dtypes else np.mean(pnn.to_numpy(pred) == y)) > 0.8
        with pytest.raises(ValueError, match=r"MLPClassifier.predict\(\) must use the same namespace"):
            clf.predict(X)
    assert isinstance(clf.coefs_[0], np.ndarray)
    plain = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0, backend=_spec(tb))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        out = plain.fit(X, y).predict_proba(X)  # no dispatch: NumPy in, NumPy out, trained on tb
    assert isinstance(out, np.ndarray)
    _same_place(plain.params_[0]["W"], Xd)


# --- where users put estimators ---------------------------------------------------------------


def test_pipeline_grid_search_cross_val_clone_pickle(tb):
    _numpy_only(tb)
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _iris()
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,), max_iter=40, random_state=0,
                                                         learning_rate_init=0.02))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(pipe, X, y, cv=3)
        grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2]}, cv=2, n_jobs=2).fit(X, y)
    assert scores.mean() > 0.8 and grid.best_score_ > 0.8
    fitted = grid.best_estimator_
    back = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(back.predict_proba(X), fitted.predict_proba(X))
    back.steps[-1][1].partial_fit(X, y)  # the optimizer state survives pickling too
    fresh = clone(fitted)
    assert not hasattr(fresh.steps[-1][1], "params_") and fresh.get_params()["mlpclassifier__max_iter"] == 40


def test_save_load_round_trip(tb, tmp_path):
    X, y = _iris()
    kw = dict(hidden_layer_sizes=(8,), max_iter=3, random_state=0, backend=_spec(tb), dtype=tb.float)
    model = pnn.Sequential(pnn.Linear(4, 8), pnn.ReLU(), pnn.Linear(8, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = [MLPClassifier(**kw).fit(X, np.array(["a", "b", "c"])[y]), MLPRegressor(**kw).fit(X, y * 1.0),
                  NeuralNetClassifier(model, epochs=2, backend=_spec(tb), dtype=tb.float).fit(X, y)]
    for i, est in enumerate(fitted):
        path = tmp_path / f"est{i}"
        est.save(path)
        objects = {"model": model} if i == 2 else {}
        back = type(est).load(path, **objects)
        assert back.get_params() == est.get_params() and back.backend_ == est.backend_
        np.testing.assert_array_equal(back.predict(X), est.predict(X))
        assert back.loss_curve_ == est.loss_curve_ and back.n_iter_ == est.n_iter_
        on_numpy = pnn.sklearn.load(path, backend="numpy", **objects)
        assert on_numpy.backend_ == "numpy:cpu" and isinstance(on_numpy.params_[0]["W"], np.ndarray)
        np.testing.assert_allclose(on_numpy.predict(X) if i == 1 else on_numpy.predict_proba(X),
                                   est.predict(X) if i == 1 else est.predict_proba(X), atol=1e-6)
        back.partial_fit(X, back.classes_[y] if i == 0 else (y * 1.0 if i == 1 else y))
    with pytest.raises(ValueError, match=r"pass the object hyperparameters again: missing \['model'\]"):
        NeuralNetClassifier.load(tmp_path / "est2")
    with pytest.raises(ValueError, match="holds a MLPRegressor, not a MLPClassifier"):
        MLPClassifier.load(tmp_path / "est1")
    with pytest.raises(NotFittedError):
        MLPClassifier().save(tmp_path / "never")


def test_import_portable_nn_does_not_import_sklearn(tb):
    _numpy_only(tb)
    code = "import portable_nn, sys; print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn' " \
           "or m.startswith('portable_nn.sklearn')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_dataframe_feature_names(tb, tmp_path):
    _numpy_only(tb)
    pd = pytest.importorskip("pandas", reason="feature_names_in_ comes from DataFrames (pandas is not installed)")
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(data.data, pd.Series(data.target))
    assert list(clf.feature_names_in_) == list(data.data.columns)
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict(data.data.rename(columns=str.upper))
    clf.save(tmp_path / "est")
    assert list(MLPClassifier.load(tmp_path / "est").feature_names_in_) == list(data.data.columns)
