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
X may have more than two axes (images ``(n, C, H, W)`` for a CNN). With
``sample_weight`` or ``class_weight`` the loss is called as ``loss(Y, T,
weights=W)``: the two defaults have weighted equivalents (``_losses``), a loss
of your own needs a ``weights`` keyword.
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
from ._losses import loss_for_weights
from ._targets import CLASS_WEIGHT_DOC, ClassifierPart, RegressorPart

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

    def _make_loss(self, weighted: bool) -> Any:
        loss = self.loss if self.loss is not None else self._default_loss()
        return loss_for_weights(loss, type(self).__name__) if weighted else loss

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


_PARAMETERS = """
    Parameters
    ----------
    model : pnn.Layer, callable or None, default=None
        The network: a Layer, a function ``model(n_features, n_outputs) -> Layer`` called at ``fit``,
        or None for ``Linear(n_features, 32) -> ReLU -> Linear(32, n_outputs)``. It maps X ``(n, ...)``
        to {outputs} per row.
    loss : callable or None, default=None
        ``loss(Y, T) -> (value, dY)`` as portable_nn's losses; None: {default_loss}. With sample or
        class weights it is called as ``loss(Y, T, weights=W)`` (the defaults have weighted equivalents).
    optimizer : portable_nn optimizer or None, default=None
        An object with ``init`` and ``step``; None: ``pnn.optim.Adam(1e-3)``.
    epochs : int, default=10
        The most epochs ``fit`` runs.
    batch_size : int, default=32
        Rows per step (clipped to the rows).
    shuffle : bool, default=True
        Reshuffle the rows every epoch.
    random_state : int, RandomState instance or None, default=None
        Initial weights, the validation split, the batches, dropout.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows, score them after each epoch and restore the
        params of the best score.
    validation_fraction : float, default=0.1
        The held-out share with ``early_stopping``.
    n_iter_no_change : int or None, default=None
        Stop after more than this many epochs in a row without an improvement by ``tol`` (None: never).
    tol : float, default=1e-4
        The improvement that counts.
    warm_start : bool, default=False
        ``fit`` continues from the fitted params instead of new ones.
    verbose : bool, default=False
        Print each epoch's loss.{extra}
    backend : str or None, default=None
        A portable_nn backend spec ("torch", "jax:cpu"...); None: the input's under scikit-learn's
        array API dispatch, else portable_nn's default backend.
    dtype : {{"float32", "float64"}}, default="float32"
        The training precision.

    Attributes
    ----------
    ``model_`` : pnn.Layer
        The model the params belong to (``model``, or the one it built).
    ``params_`` : pytree of arrays
        The fitted params, on ``backend_`` (a backend spec string), in ``dtype_``.
    ``loss_curve_`` : list of float
        Each epoch's training loss.
    ``n_iter_``, ``n_features_in_``, ``n_outputs_`` : int
        Epochs of the last ``fit``, input features, model outputs.{classes}
"""


class NeuralNetClassifier(ClassifierMixin, ClassifierPart, WrapPart):
    __doc__ = "Any portable_nn model as a scikit-learn classifier (binary and multiclass).\n" + _PARAMETERS.format(
        outputs="one logit per class", default_loss="``pnn.losses.softmax_cross_entropy`` (on class indices)",
        extra=CLASS_WEIGHT_DOC, classes="\n    ``classes_`` : ndarray\n        The class labels.",
    )

    _y_options: dict[str, Any] = {}
    _class_indices = True
    _parameter_constraints: dict[str, list[Any]] = {
        **WrapPart._parameter_constraints, "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self, model: Any = None, *, loss: Any = None, optimizer: Any = None, epochs: int = 10,
        batch_size: int = 32, shuffle: bool = True, random_state: Any = None, early_stopping: bool = False,
        validation_fraction: float = 0.1, n_iter_no_change: int | None = None, tol: float = 1e-4,
        warm_start: bool = False, verbose: bool = False, class_weight: Any = None, backend: Any = None,
        dtype: str = "float32",
    ) -> None:
        super().__init__(
            model, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
            random_state=random_state, early_stopping=early_stopping, validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change, tol=tol, warm_start=warm_start, verbose=verbose, backend=backend,
            dtype=dtype,
        )
        self.class_weight = class_weight

    def _default_loss(self) -> Any:
        return softmax_cross_entropy


class NeuralNetRegressor(RegressorMixin, RegressorPart, WrapPart):
    __doc__ = "Any portable_nn model as a scikit-learn regressor (one or more outputs).\n" + _PARAMETERS.format(
        outputs="one value per target", default_loss="``pnn.losses.mean_squared_error``", extra="", classes="",
    )

    def __init__(  # its own, so that a wrong keyword's TypeError names this class, not a private base
        self, model: Any = None, *, loss: Any = None, optimizer: Any = None, epochs: int = 10,
        batch_size: int = 32, shuffle: bool = True, random_state: Any = None, early_stopping: bool = False,
        validation_fraction: float = 0.1, n_iter_no_change: int | None = None, tol: float = 1e-4,
        warm_start: bool = False, verbose: bool = False, backend: Any = None, dtype: str = "float32",
    ) -> None:
        super().__init__(
            model, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
            random_state=random_state, early_stopping=early_stopping, validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change, tol=tol, warm_start=warm_start, verbose=verbose, backend=backend,
            dtype=dtype,
        )

    def _default_loss(self) -> Any:
        return mean_squared_error

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
