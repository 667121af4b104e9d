"""What the estimators share: validation, the backend, and the epoch loop with scikit-learn's stopping rules.

A subclass says how to build the model and its initial params (``_build``),
which loss, optimizer and penalty to train with, how targets are encoded
(``_encode``) and how a validation set is scored (``_val_score``). This class
runs ``fit`` and ``partial_fit`` the way scikit-learn's MLP does:

- each epoch reshuffles the rows with the estimator's ``RandomState``
  (``sklearn.utils.shuffle``), then takes minibatch steps;
- ``loss_curve_`` gets the epoch's mean training loss; without early stopping
  an epoch counts as "no improvement" when its loss is above
  ``best_loss_ - tol``, with it when the validation score is below
  ``best_validation_score_ + tol``; more than ``n_iter_no_change`` such epochs
  in a row stop training (early stopping then restores the best params);
- ``fit`` starts a new optimizer state (keeping the params with ``warm_start``),
  ``partial_fit`` runs one epoch and keeps the state.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ..backends import Backend, get_backend, to_backend
from ..layers.base import Layer, Params
from ..training import predict as pnn_predict
from . import _data
from ._train import Penalty, Trainer, forward

__all__ = ["NeuralNetBase", "Schedule", "arrays"]


@dataclass(frozen=True)
class Schedule:
    """How many epochs, in which batches, and when to stop (scikit-learn's MLP rules)."""

    max_epochs: int
    batch_size: int | str
    tol: float
    n_iter_no_change: float  # math.inf: never stop before max_epochs
    early_stopping: bool
    validation_fraction: float
    sklearn_warnings: bool  # as scikit-learn's MLP: ConvergenceWarning at max_epochs, batch_size > n clipped


class NeuralNetBase(BaseEstimator):
    """The fit/partial_fit machinery; see the module docstring. Not for direct use."""

    _y_options: dict[str, Any] = {}  # validate_data's options for y (multi_output, y_numeric)
    _X_options: dict[str, Any] = {}  # and for X (allow_nd)

    # hyperparameters every estimator here has (set by the subclasses' __init__)
    random_state: Any
    shuffle: bool
    verbose: Any
    warm_start: bool
    backend: str | None
    dtype: str
    # fitted attributes
    model_: Layer
    params_: Params
    n_outputs_: int
    n_iter_: int
    t_: int
    loss_curve_: list[float]
    validation_scores_: list[float] | None
    best_validation_score_: float | None
    best_loss_: float | None
    backend_: str
    dtype_: str
    out_activation_: str
    _trainer: Trainer | None

    # --- hooks ----------------------------------------------------------------------------------

    def _build(
        self, features: tuple[int, ...], n_outputs: int, be: Backend, dtype: str, rs: Any
    ) -> tuple[Layer, Params]:
        """The model and its initial params for inputs ``(n, *features)`` and ``n_outputs`` outputs."""
        raise NotImplementedError

    def _make_loss(self) -> Any:
        raise NotImplementedError

    def _make_optimizer(self) -> Any:
        raise NotImplementedError

    def _make_penalty(self) -> Penalty | None:
        return None

    def _schedule(self) -> Schedule:
        raise NotImplementedError

    def _encode(self, y: np.ndarray, incremental: bool) -> tuple[np.ndarray, np.ndarray, Any]:
        """``(T, y_val, stratify)``: targets to train on (host), targets to score against, the split's strata."""
        raise NotImplementedError

    def _val_score(self, y_true: np.ndarray, out: Any) -> float:
        raise NotImplementedError

    # --- fitting --------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> Any:
        """Train on ``X`` ``(n, features)`` and targets ``y``; returns the estimator.

        Without ``warm_start`` every call starts from new initial weights; with
        it, from the current ones. Each call starts a new optimizer state.
        """
        return self._fit(X, y, incremental=False)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.array_api_support = True  # see _data: dispatch trains on the input's namespace and device
        return tags

    def _fit(self, X: Any, y: Any, *, incremental: bool) -> NeuralNetBase:
        self._validate_params()  # BaseEstimator's: checks _parameter_constraints
        first = not hasattr(self, "params_") or not (self.warm_start or incremental)
        if not first:
            _data.check_same_namespace(self, X, "partial_fit" if incremental else "fit")
        key = _data.caller_key(X)
        schedule = self._schedule()
        if incremental and schedule.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        X, y = validate_data(self, X, y, reset=first, dtype="numeric", **self._X_options, **self._y_options)
        T, y_val_all, strata = self._encode(_data.host(y), incremental)
        rs = check_random_state(self.random_state)
        if first:
            be = _data.training_backend(self.backend, X)
            dtype = str(self.dtype)
            self.n_outputs_, self._features = self._n_model_outputs(T), tuple(X.shape[1:])
            self.model_, self.params_ = self._build(self._features, self.n_outputs_, be, dtype, rs)
            self.backend_, self.dtype_, self._input_key = _data.spec(be), dtype, key
            self.n_iter_, self.t_, self.loss_curve_ = 0, 0, []
            self._no_improvement_count = 0
            if schedule.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf
            self._best_params = self.params_
        be = get_backend(self.backend_)
        if not incremental or getattr(self, "_trainer", None) is None or getattr(self, "_opt_state", None) is None:
            self._trainer = Trainer(self.model_, self._make_loss(), self._make_optimizer(), self._make_penalty())
            self._opt_state = self._trainer.optimizer.init(self.params_)
        Xb = _data.on_backend(X, be, self.dtype_)
        Tb = be.asarray(T.astype(self.dtype_) if T.dtype.kind == "f" else T)
        validation = None
        if schedule.early_stopping:
            train, val = train_test_split(
                np.arange(Xb.shape[0]), random_state=rs, test_size=schedule.validation_fraction, stratify=strata
            )
            if val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
                )
            validation = (self._take(be, Xb, val), y_val_all[val])
            Xb, Tb = self._take(be, Xb, train), self._take(be, Tb, train)
        self._run_epochs(be, Xb, Tb, validation, schedule, rs, incremental)
        self._check_finite(be)
        return self

    def _n_model_outputs(self, T: np.ndarray) -> int:
        return int(T.shape[1])

    @staticmethod
    def _take(be: Backend, A: Any, rows: np.ndarray) -> Any:
        return be.xp.take(A, rows if be.xp is np else be.asarray(rows), axis=0)

    def _batch_size(self, schedule: Schedule, n: int) -> int:
        if schedule.batch_size == "auto":
            return min(200, n)
        size = int(schedule.batch_size)
        if size > n and schedule.sklearn_warnings:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped", stacklevel=5
            )
        return int(np.clip(size, 1, n))

    def _run_epochs(
        self, be: Backend, X: Any, T: Any, validation: Any, schedule: Schedule, rs: Any, incremental: bool
    ) -> None:
        n = X.shape[0]
        batch_size = self._batch_size(schedule, n)
        order = np.arange(n)
        dropout_rng = np.random.default_rng(rs.randint(np.iinfo(np.int32).max))
        params, state = self.params_, self._opt_state
        self.n_iter_ = 0
        try:
            for _ in range(1 if incremental else schedule.max_epochs):
                if self.shuffle:  # scikit-learn's MLP: sklearn.utils.shuffle(order, random_state=rs), less its checks
                    perm = np.arange(n)
                    rs.shuffle(perm)
                    order = order[perm]
                assert self._trainer is not None
                params, state, loss = self._trainer.epoch(
                    be, params, state, X, T, order if self.shuffle else None, batch_size, dropout_rng
                )
                self.params_, self._opt_state = params, state
                self.n_iter_ += 1
                self.t_ += n
                self.loss_curve_.append(loss)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, loss))
                self._count_no_improvement(validation, schedule)
                if self._no_improvement_count > schedule.n_iter_no_change:
                    if self.verbose:
                        what = "Validation score" if validation is not None else "Training loss"
                        print(
                            f"{what} did not improve more than tol={schedule.tol:f} for "
                            f"{schedule.n_iter_no_change:.0f} consecutive epochs. Stopping."
                        )
                    break
                if not incremental and self.n_iter_ == schedule.max_epochs and schedule.sklearn_warnings:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) reached and the optimization hasn't "
                        "converged yet." % schedule.max_epochs,
                        ConvergenceWarning,
                        stacklevel=4,
                    )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        if validation is not None:
            self.params_ = self._best_params

    def _count_no_improvement(self, validation: Any, schedule: Schedule) -> None:
        if validation is not None:
            X_val, y_val = validation
            score = self._val_score(y_val, self._forward(X_val))
            assert self.validation_scores_ is not None and self.best_validation_score_ is not None
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            improved = not score < self.best_validation_score_ + schedule.tol
            if score > self.best_validation_score_:
                self.best_validation_score_, self._best_params = score, self.params_
        else:
            loss = self.loss_curve_[-1]
            assert self.best_loss_ is not None
            improved = not loss > self.best_loss_ - schedule.tol
            if loss < self.best_loss_:
                self.best_loss_ = loss
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1

    def _check_finite(self, be: Backend) -> None:
        xp = be.xp
        if not all(bool(xp.all(xp.isfinite(p))) for p in arrays(self.params_)):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain large values and "
                "need to be preprocessed."
            )

    # --- inference ------------------------------------------------------------------------------

    def _forward(self, X: Any, dtype: str | None = None) -> Any:
        """The model's raw output (logits for classifiers) for ``X`` on the training backend, in ``dtype``.

        ``dtype`` other than the training dtype runs the model on a cast copy of
        the params (the input's precision, as scikit-learn's MLP computes in X's dtype).
        """
        params, be = self.params_, get_backend(self.backend_)
        if dtype is not None and dtype != self.dtype_:
            params = to_backend(params, be, dtype=dtype)
        fn = forward(be, self.model_)  # compiled on JAX
        return pnn_predict(self.model_, params, X, batch_size=4096) if fn is None else fn(params, X)

    def _outputs(self, X: Any, method: str) -> tuple[Any, tuple[str, str], str]:
        """Validate ``X`` for ``method``; return the model's raw output, where the caller's arrays live
        and the float dtype of outputs for them (X's: float32, or float64 for float64 and integer X).

        The model runs in that dtype where the training backend has it, so a row's
        prediction does not depend on the other rows it comes with (float32
        matmuls round differently for one row and for many).
        """
        check_is_fitted(self)
        _data.check_same_namespace(self, X, method)
        key = _data.caller_key(X)
        X = validate_data(self, X, reset=False, dtype="numeric", **self._X_options)
        be = get_backend(self.backend_)
        dtype = _data.output_dtype(X)
        run = dtype if _data.has_dtype(be, dtype) else self.dtype_
        return self._forward(_data.on_backend(X, be, run), run), key, dtype

    # --- pickling: the compiled step stays behind --------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_trainer", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._trainer = None


def arrays(tree: Any) -> Iterator[Any]:
    """The arrays of a params tree (dicts, lists, tuples), depth first."""
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, (list, tuple)):
        for item in tree:
            yield from arrays(item)
    elif hasattr(tree, "shape"):
        yield tree
