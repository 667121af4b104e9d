"""Case f: ``portable_nn.sklearn.MLPClassifier`` against scikit-learn's ``MLPClassifier``, equal epochs, digits.

Both with scikit-learn's defaults (hidden layer 100, relu, adam lr 1e-3,
alpha 1e-4, batch min(200, n), shuffled each epoch, same ``random_state``, so
the same initial weights and batches) for exactly the same number of epochs
(``tol=0``, ``n_iter_no_change`` past the last epoch), on scikit-learn's
bundled digits (standardized, 75/25 split, random_state=0). Each timed call
is one whole ``fit``; test accuracy is measured after the clock stops.

Candidates: portable_nn's estimator on NumPy (its default ``dtype="float32"``),
scikit-learn's on the same float64 data a user passes (it then computes in
float64) and, for the same precision, on float32 data; with JAX installed,
portable_nn's estimator with ``backend="jax"`` (its step compiled by ``jax.jit``).
Targets: portable_nn >= 2x faster than scikit-learn, on NumPy and on JAX.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from portable_nn import get_backend
from portable_nn.tools.problems import load_digits_data

from ._common import (
    Config,
    checked_values,
    optional,
    ratio,
    run_candidates,
    setup_threads,
    speed_target,
    timing_columns,
    timing_row,
)
from ._interleaved import Candidate
from ._result import CaseResult, Column

__all__ = ["EPOCHS", "KEY", "run"]

KEY = "f"
EPOCHS = {"full": 30, "quick": 30, "tiny": 1}
REPEATS = {"full": 5, "quick": 3, "tiny": 1}  # each repeat is a whole fit
SEED = 0
GOAL = 2.0

PNN, PNN_JAX = "portable_nn MLPClassifier (numpy, float32)", "portable_nn MLPClassifier (jax, float32)"
SKLEARN, SKLEARN_32 = "sklearn MLPClassifier (float64 data)", "sklearn MLPClassifier (float32 data)"


def _settings(epochs: int) -> dict[str, Any]:
    """The same hyperparameters for both: scikit-learn's defaults, exactly ``epochs`` epochs."""
    return {"max_iter": epochs, "tol": 0.0, "n_iter_no_change": epochs + 1, "random_state": SEED}


def run(config: Config) -> CaseResult:
    """Time whole fits at equal epochs; target: portable_nn's estimator >= 2x faster than scikit-learn's."""
    epochs = EPOCHS[config.profile]
    result = CaseResult(
        KEY,
        f"scikit-learn estimators: MLPClassifier(hidden 100, adam), {epochs} epochs of batch 200 on digits, "
        "wall time of one fit",
    )
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier as SkMLPClassifier

        from portable_nn.sklearn import MLPClassifier
    except ImportError as e:
        result.skipped["all"] = f"scikit-learn is not installed ({e}); pip install 'portable_nn[sklearn]'"
        return result
    compare = optional("sklearn", config, result, SKLEARN) is not None
    jax = optional("jax", config, result, PNN_JAX)
    result.environment = {"threads": setup_threads()}
    Xtr, Xte, ytr, yte = load_digits_data()
    settings = _settings(epochs)
    fitted: dict[str, Any] = {}

    def candidate(name: str, make: Any, X: np.ndarray) -> Candidate:
        def fit() -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                fitted[name] = make(**settings).fit(X, ytr)

        return Candidate(name, fit, get_backend("numpy"))

    builders = [(PNN, lambda: candidate(PNN, MLPClassifier, Xtr))]
    if compare:
        builders += [
            (SKLEARN, lambda: candidate(SKLEARN, SkMLPClassifier, Xtr)),
            (SKLEARN_32, lambda: candidate(SKLEARN_32, SkMLPClassifier, Xtr.astype(np.float32))),
        ]
    if jax is not None:
        builders.append((PNN_JAX, lambda: candidate(PNN_JAX, lambda **kw: MLPClassifier(backend="jax", **kw), Xtr)))
    repeats = config.case_repeats(REPEATS)
    timings = run_candidates(
        builders, config, result, desc="f: sklearn", calls=1, repeats=repeats, warmup=1, warmup_s=0.0
    )
    scorers = {name: (lambda name=name: float(fitted[name].score(Xte, yte))) for name in timings}
    acc = checked_values(scorers, timings, result, "accuracy")
    t_sklearn = timings[SKLEARN].median if SKLEARN in timings else None
    for name, timing in timings.items():
        result.rows.append(
            timing_row(name, timing, ratio=ratio(t_sklearn, timing.median), accuracy=acc.get(name), epochs=epochs)
        )
    result.columns = [
        *timing_columns("fit"),
        Column("sklearn / this", "ratio", "ratio"),
        Column("test acc", "accuracy", "acc"),
    ]
    result.targets = [
        speed_target(timings, f"{who} >= {GOAL:g}x faster than sklearn MLPClassifier (equal epochs)",
                     f"t(sklearn)/t({who})", SKLEARN, name, ">=", GOAL)
        for who, name in (("portable_nn", PNN), ("portable_nn on JAX", PNN_JAX))
        if name == PNN or name in timings
    ]
    result.notes.append(
        "same hyperparameters and random_state: the same initial weights and batches; "
        f"'{SKLEARN_32}' is scikit-learn at portable_nn's precision"
    )
    if PNN_JAX in timings:
        result.notes.append(f"{PNN_JAX}: timed after a warm-up fit (which compiles the step once per process)")
    result.settings = {"epochs": epochs, "repeats": repeats, **settings,
                       "ratio": "median fit time of sklearn MLPClassifier (float64 data) / median fit time of this"}
    return result
