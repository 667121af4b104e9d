"""NeuralNetClassifier and NeuralNetRegressor: any portable_nn model as a scikit-learn estimator.

``model`` is a hyperparameter like any other (``clone`` copies it, a grid
search can vary it): a ``pnn.Layer`` (a ``Sequential``, a CNN, a layer of
your own), or a function ``model(n_features, n_outputs) -> Layer`` that
builds one for the data ``fit`` sees, or None for a small MLP
(``Linear(n_features, 32) -> ReLU -> Linear(32, n_outputs)``). The fitted
params are the attribute ``params_``; ``model_`` is the model they belong to.

The model maps ``X`` ``(n, ...)`` to one output per class (logits: the
classifier applies softmax for ``predict_proba``) or per target. ``loss``
takes ``(Y, T)`` as portable_nn's losses do: the classifier passes integer
class indices (``pnn.losses.softmax_cross_entropy``, the default), the
regressor float targets ``(n, outputs)`` (``pnn.losses.mean_squared_error``,
the default). ``optimizer`` is a portable_nn optimizer (default ``Adam(1e-3)``).
X may have more than two axes (images ``(n, C, H, W)`` for a CNN).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from ..backends import Backend
from ..layers.activations import ReLU
from ..layers.base import Layer, Params, has_state
from ..layers.linear import Linear
from ..layers.sequential import Sequential
from ..losses import mean_squared_error, softmax_cross_entropy
from ..optim import Adam
from ._base import NeuralNetBase, Schedule
from ._io import Persist
from ._targets import ClassifierPart, RegressorPart

__all__ = ["NeuralNetClassifier", "NeuralNetRegressor", "HIDDEN"]

HIDDEN = 32  # the default model's hidden width


class WrapPart(Persist, NeuralNetBase):
    """The model, loss and optimizer as given; a fixed number of epochs unless told to stop early."""

    _X_options: dict[str, Any] = {"allow_nd": True}
    _parameter_constraints: dict[str, list[Any]] = {
        "model": [None, Layer, callable],
        "loss": [None, callable],
        "optimizer": [None, HasMethods(["init", "step"])],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [None, Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "backend": [None, str],  # a spec: clone deep-copies parameters, and a Backend holds a module
        "dtype": [StrOptions({"float32", "float64"})],
    }

    def __init__(
        self,
        model: Any = None,
        *,
        loss: Any = None,
        optimizer: Any = None,
        epochs: int = 10,
        batch_size: int = 32,
        shuffle: bool = True,
        random_state: Any = None,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int | None = None,
        tol: float = 1e-4,
        warm_start: bool = False,
        verbose: bool = False,
        backend: Any = None,
        dtype: str = "float32",
    ) -> None:
        self.model, self.loss, self.optimizer, self.epochs, self.batch_size = model, loss, optimizer, epochs, batch_size
        self.shuffle, self.random_state, self.early_stopping = shuffle, random_state, early_stopping
        self.validation_fraction, self.n_iter_no_change, self.tol = validation_fraction, n_iter_no_change, tol
        self.warm_start, self.verbose, self.backend, self.dtype = warm_start, verbose, backend, dtype

    def _build(
        self, features: tuple[int, ...], n_outputs: int, be: Backend, dtype: str, rs: Any
    ) -> tuple[Layer, Params]:
        name = type(self).__name__
        model = self.model
        if model is None:
            model = Sequential(Linear(features[0], HIDDEN), ReLU(), Linear(HIDDEN, n_outputs))
        elif not isinstance(model, Layer):
            model = model(features[0], n_outputs)
            if not isinstance(model, Layer):
                raise TypeError(f"{name}: model(n_features, n_outputs) returned a {type(model).__name__}, not a Layer.")
        if has_state(model):
            raise TypeError(
                f"{name}: {model!r} has a layer with a model state (BatchNorm's running statistics); the "
                "scikit-learn estimators train stateless models only. Train it with pnn.fit, which carries "
                "the state, or use LayerNorm instead of BatchNorm."
            )
        params = model.init(seed=int(rs.randint(np.iinfo(np.int32).max)), backend=be, dtype=dtype)
        try:  # one row through the model: its input and output shapes, checked before training
            out = model.apply(params, be.asarray(np.zeros((1, *features), dtype=dtype)))[0]
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}: the model does not take X rows of shape {features}: {e}") from e
        if tuple(out.shape) != (1, n_outputs):
            what = "one logit per class" if isinstance(self, ClassifierMixin) else "one value per target"
            raise ValueError(
                f"{name}: the model gives outputs of shape {tuple(out.shape[1:])} per row, but {n_outputs} are "
                f"needed ({what}). Change its last layer's width, or pass model=f(n_features, n_outputs)."
            )
        return model, params

    def _make_loss(self) -> Any:
        return self.loss if self.loss is not None else self._default_loss()

    def _default_loss(self) -> Any:
        raise NotImplementedError

    def _make_optimizer(self) -> Any:
        return self.optimizer if self.optimizer is not None else Adam(1e-3)

    def _schedule(self) -> Schedule:
        return Schedule(
            max_epochs=int(self.epochs),
            batch_size=int(self.batch_size),
            tol=float(self.tol),
            n_iter_no_change=math.inf if self.n_iter_no_change is None else float(self.n_iter_no_change),
            early_stopping=bool(self.early_stopping),
            validation_fraction=float(self.validation_fraction),
            sklearn_warnings=False,
        )


_DOC = """
    Parameters: ``model`` (a Layer, a function ``(n_features, n_outputs) -> Layer``, or None for a
    small MLP), ``loss``, ``optimizer`` (None: the defaults), ``epochs``, ``batch_size``, ``shuffle``,
    ``random_state``, ``early_stopping`` with ``validation_fraction`` (restores the params of the best
    validation score), ``n_iter_no_change`` and ``tol`` (stop after that many epochs without an
    improvement by ``tol``; None: never stop early), ``warm_start``, ``verbose``, ``backend``, ``dtype``.

    Fitted attributes: ``model_``, ``params_``, ``loss_curve_``, ``n_iter_``, ``n_features_in_``,
    ``n_outputs_``, ``backend_``, ``dtype_`` (classifier: ``classes_``).
"""


class NeuralNetClassifier(ClassifierMixin, ClassifierPart, WrapPart):
    __doc__ = "Any portable_nn model as a scikit-learn classifier (binary and multiclass).\n" + _DOC

    _y_options: dict[str, Any] = {}
    _class_indices = True

    def _default_loss(self) -> Any:
        return softmax_cross_entropy


class NeuralNetRegressor(RegressorMixin, RegressorPart, WrapPart):
    __doc__ = "Any portable_nn model as a scikit-learn regressor (one or more outputs).\n" + _DOC

    def _default_loss(self) -> Any:
        return mean_squared_error

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
