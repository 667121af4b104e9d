"""A scikit-learn grid search
==========================

A scikit-learn Pipeline and GridSearchCV on digits, with portable_nn's MLPClassifier beside scikit-learn's.

::

    python examples/sklearn_pipeline.py                    # NumPy
    python examples/sklearn_pipeline.py --backend jax      # train portable_nn's on JAX (or torch, ...)

The same pipeline (StandardScaler, then the MLP) and the same grid over both
estimators, which take the same parameters; prints each one's best
parameters, test accuracy and the grid search's wall time.
"""

from __future__ import annotations

import argparse
import time
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from portable_nn.sklearn import MLPClassifier
from portable_nn.tools.arguments import backend_arg, int_at_least, positive_int

# gallery-args: --max-iter 5 --cv 2 --n-jobs 1

GRID = {"mlpclassifier__hidden_layer_sizes": [(64,), (128,)], "mlpclassifier__alpha": [1e-4, 1e-2]}


def search(estimator: object, X: object, y: object, *, cv: int, n_jobs: int) -> tuple[GridSearchCV, float]:
    """Grid search over GRID for ``StandardScaler -> estimator``; return it and its wall seconds."""
    grid = GridSearchCV(make_pipeline(StandardScaler(), estimator), GRID, cv=cv, n_jobs=n_jobs)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    return grid, time.perf_counter() - start


def _import_estimators() -> None:
    import sklearn.neural_network  # noqa: F401

    import portable_nn.sklearn  # noqa: F401


def warm_workers(n_jobs: int) -> None:
    """Start joblib's worker processes and import both libraries there, so neither search pays for it."""
    from joblib import Parallel, delayed

    Parallel(n_jobs=n_jobs)(delayed(_import_estimators)() for _ in range(n_jobs))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])  # the line under the title
    parser.add_argument(
        "--backend", type=backend_arg, default=None, help="portable_nn backend (default: the default backend)"
    )
    parser.add_argument("--max-iter", type=positive_int, default=200, help="epochs at most (both estimators)")
    parser.add_argument("--cv", type=int_at_least(2), default=3)
    parser.add_argument("--n-jobs", type=int, default=2, help="joblib's: -1 for every core")
    args = parser.parse_args(argv)
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    candidates = {
        "portable_nn MLPClassifier": MLPClassifier(max_iter=args.max_iter, random_state=0, backend=args.backend),
        "sklearn MLPClassifier": SkMLPClassifier(max_iter=args.max_iter, random_state=0),
    }
    print(f"digits: {len(X_train)} training rows, {len(X_test)} test rows; grid {GRID}, {args.cv}-fold, "
          f"n_jobs={args.n_jobs}")
    warm_workers(args.n_jobs)
    for name, estimator in candidates.items():
        grid, seconds = search(estimator, X_train, y_train, cv=args.cv, n_jobs=args.n_jobs)
        best = {k.split("__")[1]: v for k, v in grid.best_params_.items()}
        print(f"{name:26s} test accuracy {grid.score(X_test, y_test):.4f}  grid search {seconds:6.2f} s  best {best}")


if __name__ == "__main__":
    main()
