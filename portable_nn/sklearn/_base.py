"""What the estimators share: validation of the inputs and weights, the backend, fit and inference.

A subclass says how to build the model and its initial params (``_build``),
which loss, optimizer and penalty to train with, how targets are encoded
(``_encode``), the rows' weight factors (``_class_factors``: the classifiers' ``class_weight``)
and how a validation set is scored (``_val_score``). This class runs ``fit``
and ``partial_fit`` the way scikit-learn's MLP does, on portable_nn's one
training engine (see ``_train``):

- ``fit`` starts a new optimizer state (keeping the params with ``warm_start``),
  ``partial_fit`` runs one epoch and keeps the state;
- ``sample_weight`` (validated as scikit-learn does, on the data's device)
  weighs each row's loss: a batch's loss is ``sum(w_i l_i) / sum(w_i)``, the L2
  term is divided by ``sum(w_i)`` instead of the batch's rows, ``loss_curve_``
  is the mean of the batch losses weighted by their rows (scikit-learn's), and
  with ``early_stopping`` the validation split keeps its rows' weights for its score.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ..backends import Backend, get_backend, namespace, to_backend
from ..layers.base import Layer, Params, config_key
from ..losses import unchecked
from ..training import StepSpec, TrainStep, compiled
from ..training import predict as pnn_predict
from . import _data
from ._train import Schedule, run_epochs

__all__ = ["NeuralNetBase", "Schedule", "arrays"]


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
    _opt_state: Any
    _best_params: Params
    _no_improvement_count: int

    # --- hooks ----------------------------------------------------------------------------------

    def _build(
        self, features: tuple[int, ...], n_outputs: int, be: Backend, dtype: str, rs: Any
    ) -> tuple[Layer, Params]:
        """The model and its initial params for inputs ``(n, *features)`` and ``n_outputs`` outputs."""
        raise NotImplementedError

    def _make_loss(self, weighted: bool) -> Any:
        """The loss; ``weighted``: it is called as ``loss(Y, T, weights=W)``."""
        raise NotImplementedError

    def _make_optimizer(self) -> Any:
        raise NotImplementedError

    def _make_penalty(self) -> Any:
        """``penalty(params, grads, batch_weight) -> (loss term, grads)`` or None."""
        return None

    def _schedule(self) -> Schedule:
        raise NotImplementedError

    def _encode(self, y: np.ndarray, incremental: bool) -> tuple[np.ndarray, np.ndarray, Any]:
        """``(T, y_val, stratify)``: targets to train on (host), targets to score against, the split's strata."""
        raise NotImplementedError

    def _class_factors(self, sample_weight: Any, y: np.ndarray, incremental: bool) -> np.ndarray | None:
        """Factors ``(n,)`` (host) of the rows' sample weights (the classifiers' ``class_weight``), or None;
        ``y`` as ``_encode`` returned it."""
        return None

    def _val_score(self, y_true: np.ndarray, out: Any, sample_weight: np.ndarray | None) -> float:
        raise NotImplementedError

    # --- fitting --------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        """Train on ``X`` ``(n, features)`` and targets ``y``; returns the estimator.

        Without ``warm_start`` every call starts from new initial weights; with
        it, from the current ones. Each call starts a new optimizer state.
        ``sample_weight`` ``(n,)`` (>= 0, not all 0) weighs each row's loss.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.array_api_support = True  # see _data: dispatch trains on the input's namespace and device
        return tags

    def _fit(self, X: Any, y: Any, sample_weight: Any, *, incremental: bool) -> NeuralNetBase:
        self._validate_params()  # BaseEstimator's: checks _parameter_constraints
        first = not hasattr(self, "params_") or not (self.warm_start or incremental)
        if not first:
            _data.check_same_namespace(self, X, "partial_fit" if incremental else "fit")
        key = _data.caller_key(X)
        schedule = self._schedule()
        if incremental and schedule.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        X, y = validate_data(self, X, y, reset=first, dtype="numeric", **self._X_options, **self._y_options)
        if sample_weight is not None:  # in X's namespace and on its device, as scikit-learn checks them
            sample_weight = _check_sample_weight(sample_weight, X, ensure_non_negative=True)
        T, y_val_all, strata = self._encode(_data.host(y), incremental)
        factors = self._class_factors(sample_weight, y_val_all, incremental)
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
        Xb = _data.on_backend(X, be, self.dtype_)
        Tb = be.asarray(T.astype(self.dtype_) if T.dtype.kind == "f" else T)
        Wb = self._training_weights(be, sample_weight, factors)
        validation = None
        if schedule.early_stopping:
            train, val = train_test_split(
                np.arange(Xb.shape[0]), random_state=rs, test_size=schedule.validation_fraction, stratify=strata
            )
            if val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
                )
            w_val = None if sample_weight is None else _data.host(sample_weight)[val]
            validation = (self._take(be, Xb, val), y_val_all[val], w_val)
            Xb, Tb = self._take(be, Xb, train), self._take(be, Tb, train)
            Wb = None if Wb is None else self._take(be, Wb, train)
        spec = self._step_spec(Xb, Wb is not None)
        opt_state = getattr(self, "_opt_state", None) if incremental else None
        run_epochs(self, spec, Xb, Tb, Wb, validation, schedule, rs, incremental, opt_state)
        self._check_finite(be)
        return self

    def _training_weights(self, be: Backend, sample_weight: Any, factors: np.ndarray | None) -> Any:
        """The rows' weights on ``be`` in the training dtype (sample weights times factors), or None."""
        W = None if sample_weight is None else _data.on_backend(sample_weight, be, self.dtype_)
        if factors is None:
            return W
        F = be.asarray(factors.astype(self.dtype_))
        return F if W is None else W * F

    def _step_spec(self, X: Any, weighted: bool) -> StepSpec:
        """The training step: the model, the loss (without its entry checks where the step is not
        compiled: the data were checked once, as ``pnn.fit`` does), the optimizer and the penalty."""
        spec = StepSpec(self.model_, self._make_loss(weighted), self._make_optimizer(), self._make_penalty())
        if TrainStep(spec, None).compiler(X) is None:
            spec = StepSpec(spec.model, unchecked(spec.loss, namespace(X)), spec.optimizer, spec.penalty)
        return spec

    def _n_model_outputs(self, T: np.ndarray) -> int:
        return int(T.shape[1])

    @staticmethod
    def _take(be: Backend, A: Any, rows: np.ndarray) -> Any:
        return be.xp.take(A, rows if be.xp is np else be.asarray(rows), axis=0)

    def _check_finite(self, be: Backend) -> None:
        xp = be.xp
        if not all(bool(xp.all(xp.isfinite(p))) for p in arrays(self.params_)):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain large values and "
                "need to be preprocessed."
            )

    # --- inference ------------------------------------------------------------------------------

    def _forward(self, X: Any, dtype: str | None = None, params: Params | None = None) -> Any:
        """The model's raw output (logits for classifiers) for ``X`` on the training backend, in ``dtype``.

        ``params``: default ``params_``. ``dtype`` other than the training dtype runs the model on a cast
        copy of the params (the input's precision, as scikit-learn's MLP computes in X's dtype). Where the
        backend's library compiles by default (JAX), the pass is compiled once per model configuration
        (the training engine's compile cache).
        """
        params = self.params_ if params is None else params
        be, model = get_backend(self.backend_), self.model_
        if dtype is not None and dtype != self.dtype_:
            params = to_backend(params, be, dtype=dtype)
        if not be.adapter.jit_by_default:
            return pnn_predict(model, params, X, batch_size=4096)
        return compiled(X, "forward", config_key(model), lambda: lambda p, A: model.apply(p, A)[0])(params, X)

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


def arrays(tree: Any) -> Iterator[Any]:
    """The arrays of a params tree (dicts, lists, tuples), depth first."""
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, (list, tuple)):
        for item in tree:
            yield from arrays(item)
    elif hasattr(tree, "shape"):
        yield tree
