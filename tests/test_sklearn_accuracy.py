"""portable_nn.sklearn's MLPs against scikit-learn's on its bundled data sets: same hyperparameters,
test accuracy (R² for diabetes) averaged over 3 seeds, within 0.01 (numpy session only); also with
sample weights (the same weights for both).

``python tests/test_sklearn_accuracy.py`` prints the table that README.md shows.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import datasets  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from portable_nn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

SEEDS = (0, 1, 2)
# scikit-learn's defaults (hidden (100,), adam, alpha 1e-4, batch min(200, n), tol 1e-4) except max_iter;
# diabetes: target standardized on the training split, early stopping (10% validation) against overfitting
SETTINGS = {
    "iris": dict(max_iter=200),
    "wine": dict(max_iter=100),
    "breast_cancer": dict(max_iter=100),
    "digits": dict(max_iter=100),
    "diabetes": dict(max_iter=200, early_stopping=True),
}
WEIGHTED = ("breast_cancer", "diabetes")  # fit(X, y, sample_weight=w), w uniform in [0.2, 2] (seeded)


def split(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """75/25 split (stratified for classes, random_state=0), inputs standardized on the training part."""
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    regression = name == "diabetes"
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=None if regression else y)
    scaler = StandardScaler().fit(Xtr)
    if regression:
        mean, std = ytr.mean(), ytr.std()
        ytr, yte = (ytr - mean) / std, (yte - mean) / std
    return scaler.transform(Xtr), scaler.transform(Xte), ytr, yte


def compare(name: str, weighted: bool = False) -> dict[str, float]:
    """Mean test score over SEEDS of portable_nn's and scikit-learn's MLP, and their fit times.

    One BLAS thread for both: on a shared 2-core machine two BLAS threads per process made these
    small matmuls 6x slower (threads waiting for cores), and it changes nothing in the results.
    """
    with threadpool_limits(limits=1):
        return _compare(name, weighted)


def _compare(name: str, weighted: bool) -> dict[str, float]:
    Xtr, Xte, ytr, yte = split(name)
    w = np.random.default_rng(0).uniform(0.2, 2.0, len(ytr)) if weighted else None
    ours, theirs = (MLPRegressor, SkMLPRegressor) if name == "diabetes" else (MLPClassifier, SkMLPClassifier)
    out = {"pnn": 0.0, "sklearn": 0.0, "pnn_s": 0.0, "sklearn_s": 0.0}
    for seed in SEEDS:
        for key, cls in (("pnn", ours), ("sklearn", theirs)):
            est = cls(random_state=seed, **SETTINGS[name])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                start = time.perf_counter()
                est.fit(Xtr, ytr, sample_weight=w)
                out[f"{key}_s"] += time.perf_counter() - start
            out[key] += est.score(Xte, yte) / len(SEEDS)
    return out


@pytest.mark.parametrize("name, weighted", [(name, False) for name in SETTINGS] + [(n, True) for n in WEIGHTED])
def test_accuracy_matches_sklearn(tb, name, weighted):
    if tb.spec != "numpy":
        pytest.skip("compared with scikit-learn in the numpy session only (the training is backend-independent)")
    r = compare(name, weighted)
    assert abs(r["pnn"] - r["sklearn"]) <= 0.01, r
    assert r["sklearn"] > (0.3 if name == "diabetes" else 0.9), r  # the comparison is made where both learn


if __name__ == "__main__":
    print("| data set | metric | portable_nn | scikit-learn | difference | fit time portable_nn / scikit-learn |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, weighted in [(name, False) for name in SETTINGS] + [(n, True) for n in WEIGHTED]:
        r = compare(name, weighted)
        metric = "R²" if name == "diabetes" else "accuracy"
        print(f"| {name}{' (sample_weight)' if weighted else ''} | {metric} | {r['pnn']:.4f} | {r['sklearn']:.4f} | {r['pnn'] - r['sklearn']:+.4f} | "
              f"{r['pnn_s']:.2f} s / {r['sklearn_s']:.2f} s |")
