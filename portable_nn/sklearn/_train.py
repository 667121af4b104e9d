"""The estimators' training: portable_nn's one epoch driver, with scikit-learn's MLP rules as its callback.

:func:`run_epochs` hands the step (model, loss, optimizer, penalty) and the
data to ``portable_nn.training.train`` (the engine under ``pnn.fit``: the
portable steps, or on JAX whole epochs compiled as one ``lax.scan``) with:

- each epoch's row order drawn from the estimator's ``RandomState`` the way
  scikit-learn's MLP shuffles (``sklearn.utils.shuffle`` of the running order),
  so the minibatches are scikit-learn's;
- :class:`SklearnRules` as the driver's callback after every epoch: it
  records ``loss_curve_``, ``n_iter_`` and ``t_``, prints with ``verbose``,
  scores the validation split with ``early_stopping`` (keeping the best
  params), and stops training after more than ``n_iter_no_change`` epochs
  without an improvement by ``tol``;
- the optimizer state to continue from (``partial_fit``), and back the one
  after the last step.

Ctrl-C (``FitInterrupted``) keeps the last completed step's params and
optimizer state with scikit-learn's warning "Training interrupted by user.".
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..layers.base import Params, uses_host_rng
from ..losses import reduction_of
from ..training import FitInterrupted, MemorySource, Settings, StepSpec, train

__all__ = ["Schedule", "SklearnRules", "run_epochs"]


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


class SklearnRules:
    """The driver's callback after each epoch: scikit-learn's bookkeeping and stopping rules.

    An epoch counts as "no improvement" when its loss is above ``best_loss_ - tol``
    or, with a validation split, when its score is below ``best_validation_score_ + tol``;
    more than ``n_iter_no_change`` such epochs in a row stop training.

    Args:
        est: the estimator (its fitted attributes are updated in place).
        validation: ``(X_val, y_val, sample_weight_val or None)`` or None.
        rows: the training rows (``t_`` grows by them each epoch).
    """

    def __init__(self, est: Any, schedule: Schedule, validation: Any, rows: int) -> None:
        self.est, self.schedule, self.validation, self.rows = est, schedule, validation, rows
        self.stopped = False

    def on_epoch_end(self, epoch: int, history: dict[str, list[float]], params: Params) -> bool:
        est, schedule = self.est, self.schedule
        loss = history["loss"][-1]
        est.n_iter_ += 1
        est.t_ += self.rows
        est.loss_curve_.append(loss)
        if est.verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, loss))
        improved = self._score(params) if self.validation is not None else self._loss(loss)
        est._no_improvement_count = 0 if improved else est._no_improvement_count + 1
        if est._no_improvement_count > schedule.n_iter_no_change:
            if est.verbose:
                what = "Validation score" if self.validation is not None else "Training loss"
                print(
                    f"{what} did not improve more than tol={schedule.tol:f} for "
                    f"{schedule.n_iter_no_change:.0f} consecutive epochs. Stopping."
                )
            self.stopped = True
        return self.stopped

    def _score(self, params: Params) -> bool:
        est = self.est
        X_val, y_val, w_val = self.validation
        score = est._val_score(y_val, est._forward(X_val, params=params), w_val)
        est.validation_scores_.append(score)
        if est.verbose:
            print("Validation score: %f" % score)
        improved = not score < est.best_validation_score_ + self.schedule.tol
        if score > est.best_validation_score_:
            est.best_validation_score_, est._best_params = score, params  # params are never updated in place
        return improved

    def _loss(self, loss: float) -> bool:
        est = self.est
        improved = not loss > est.best_loss_ - self.schedule.tol
        est.best_loss_ = min(est.best_loss_, loss)
        return improved


def batch_size(schedule: Schedule, n: int) -> int:
    """The rows per step: ``"auto"`` is ``min(200, n)``; larger than ``n`` is clipped (scikit-learn warns)."""
    if schedule.batch_size == "auto":
        return min(200, n)
    size = int(schedule.batch_size)
    if size > n and schedule.sklearn_warnings:
        warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped", stacklevel=5)
    return int(np.clip(size, 1, n))


def sklearn_orders(rs: np.random.RandomState, n: int) -> Callable[[], np.ndarray]:
    """Each epoch's row order as scikit-learn's MLP draws it: its running order, shuffled by ``rs``."""
    order = np.arange(n)

    def draw() -> np.ndarray:
        nonlocal order
        perm = np.arange(n)
        rs.shuffle(perm)  # sklearn.utils.shuffle(order, random_state=rs), less its checks
        order = order[perm]
        return order

    return draw


def run_epochs(
    est: Any, spec: StepSpec, X: Any, T: Any, W: Any, validation: Any, schedule: Schedule, rs: Any,
    incremental: bool, opt_state: Any,
) -> None:
    """Train ``est.params_`` on ``X``, ``T`` (sample weights ``W`` or None; arrays of the training backend):
    one epoch (``incremental``) or up to ``schedule.max_epochs``, from ``opt_state`` (None: a new one).

    Sets ``params_`` (the best validation epoch's with a validation split), ``_opt_state`` and, through
    :class:`SklearnRules`, ``n_iter_``, ``t_``, ``loss_curve_`` and the stopping bookkeeping.
    """
    n = int(X.shape[0])
    size = batch_size(schedule, n)
    # dropout's host RNG; drawn from rs only for a model that uses it, since the draw would shift the
    # shuffles after it away from scikit-learn's
    seed = int(rs.randint(np.iinfo(np.int32).max)) if uses_host_rng(spec.model) else 0
    rules = SklearnRules(est, schedule, validation, n)
    settings = Settings(
        epochs=1 if incremental else schedule.max_epochs, batch_size=size, seed=seed, shuffle=bool(est.shuffle),
        progress=False, on_nonfinite="ignore", callbacks=(rules,),  # non-finite params: the estimator's error
    )
    data = MemorySource(X, T, W, counts_correct=False, n_labels=n)
    est.n_iter_ = 0
    interrupted = False
    try:
        out = train(
            spec, est.params_, data, settings, reduction=reduction_of(spec.loss), opt_state=opt_state,
            orders=sklearn_orders(rs, n) if est.shuffle else lambda: None, batch_weight="rows",
        )
        est.params_, est._opt_state = out.params, out.opt_state
    except FitInterrupted as e:
        est.params_ = e.params
        if e.opt_state is not None:
            est._opt_state = e.opt_state
        interrupted = True
        warnings.warn("Training interrupted by user.", stacklevel=4)
    if validation is not None:
        est.params_ = est._best_params
    if (not (incremental or interrupted or rules.stopped) and est.n_iter_ == schedule.max_epochs
            and schedule.sklearn_warnings):
        warnings.warn(
            "Stochastic Optimizer: Maximum iterations (%d) reached and the optimization hasn't converged yet."
            % schedule.max_epochs,
            ConvergenceWarning,
            stacklevel=4,
        )
