"""MLPClassifier and MLPRegressor: scikit-learn's MLP estimators, trained by portable_nn on any backend.

The parameters are scikit-learn's, with the same defaults and meanings
(``solver`` "adam" or "sgd"; no "lbfgs", no learning-rate schedules), plus
``backend`` and ``dtype``. The same ``random_state`` gives the same initial
weights (Glorot-uniform, drawn from the same ``RandomState`` in the same
order), the same validation split and the same minibatches as scikit-learn;
the losses, the L2 penalty (``alpha``, on the weights, divided by the batch
size, or by the sum of its sample weights) and the optimizers follow
scikit-learn's formulas, so in float64 the training curves agree to rounding.
Adam differs only in where ``epsilon`` enters (``m / (sqrt(v) + eps)`` after
bias correction here, before it there).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils._param_validation import Interval, Options, StrOptions

from ..backends import Backend, namespace
from ..layers.activations import ReLU, Sigmoid, Tanh
from ..layers.base import Layer, Params
from ..layers.linear import Linear
from ..layers.sequential import Sequential
from ..optim import SGD, Adam
from ._base import NeuralNetBase, Schedule
from ._data import host
from ._io import Persist
from ._losses import binary_log_loss, half_squared_error, log_loss
from ._targets import CLASS_WEIGHT_DOC, ClassifierPart, RegressorPart

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATIONS: dict[str, type[Layer] | None] = {"relu": ReLU, "tanh": Tanh, "logistic": Sigmoid, "identity": None}


@dataclass(frozen=True)
class L2Penalty:
    """scikit-learn's L2 term: ``alpha / (2 m) * sum(W**2)`` over the weights (not the biases).

    ``m`` is the batch's weight: its rows, or the sum of its sample weights. The gradient
    ``alpha / m * W`` is added to each weight's. Equal by value (one compiled step per alpha).
    """

    alpha: float

    def __call__(self, params: Params, grads: Params, batch_weight: Any) -> tuple[Any, Params]:
        scale = self.alpha / batch_weight
        total: Any = 0.0
        out = []
        for p, g in zip(params, grads, strict=True):
            if "W" in p:
                W = p["W"]
                w = namespace(W).reshape(W, (-1,))
                total = total + w @ w  # sum(W * W), as one dot product
                g = {**g, "W": g["W"] + scale * W}
            out.append(g)
        return (0.5 * scale) * total, out


class MLPPart(Persist, NeuralNetBase):
    """The network, its initial weights, the optimizer and the penalty from scikit-learn's MLP parameters."""

    _parameter_constraints: dict[str, list[Any]] = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "solver": [StrOptions({"sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "backend": [None, str],  # a spec: clone deep-copies parameters, and a Backend holds a module
        "dtype": [StrOptions({"float32", "float64"})],
    }

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate_init: float = 0.001,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: float = 10,
        backend: Any = None,
        dtype: str = "float32",
    ) -> None:
        self.hidden_layer_sizes, self.activation, self.solver, self.alpha = hidden_layer_sizes, activation, solver, alpha
        self.batch_size, self.learning_rate_init, self.max_iter = batch_size, learning_rate_init, max_iter
        self.shuffle, self.random_state, self.tol, self.verbose = shuffle, random_state, tol, verbose
        self.warm_start, self.momentum, self.nesterovs_momentum = warm_start, momentum, nesterovs_momentum
        self.early_stopping, self.validation_fraction = early_stopping, validation_fraction
        self.beta_1, self.beta_2, self.epsilon, self.n_iter_no_change = beta_1, beta_2, epsilon, n_iter_no_change
        self.backend, self.dtype = backend, dtype

    def _build(
        self, features: tuple[int, ...], n_outputs: int, be: Backend, dtype: str, rs: Any
    ) -> tuple[Layer, Params]:
        sizes = self.hidden_layer_sizes
        hidden = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if any(h <= 0 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        units = [features[0], *(int(h) for h in hidden), n_outputs]
        activation = _ACTIVATIONS[self.activation]
        factor = 2.0 if self.activation == "logistic" else 6.0
        layers: list[Layer] = []
        params: list[dict[str, Any]] = []
        for i, (fan_in, fan_out) in enumerate(pairwise(units)):
            bound = np.sqrt(factor / (fan_in + fan_out))  # scikit-learn's Glorot-uniform, in its draw order
            W = rs.uniform(-bound, bound, (fan_in, fan_out))
            b = rs.uniform(-bound, bound, fan_out)
            layers.append(Linear(fan_in, fan_out))
            params.append({"W": be.asarray(W.astype(dtype)), "b": be.asarray(b.astype(dtype))})
            if i < len(units) - 2 and activation is not None:
                layers.append(activation())
                params.append({})
        self.n_layers_ = len(units)
        return Sequential(*layers), params

    def _make_loss(self, weighted: bool) -> Any:
        if self.out_activation_ == "identity":
            return half_squared_error
        return log_loss if self.out_activation_ == "softmax" else binary_log_loss

    def _make_optimizer(self) -> Any:
        lr = float(self.learning_rate_init)
        if self.solver == "adam":
            return Adam(lr, b1=self.beta_1, b2=self.beta_2, eps=self.epsilon)
        momentum = float(self.momentum)
        return SGD(lr, momentum=momentum, nesterov=bool(self.nesterovs_momentum) and momentum > 0)

    def _make_penalty(self) -> Any:
        return L2Penalty(float(self.alpha)) if self.alpha else None

    def _schedule(self) -> Schedule:
        return Schedule(
            max_epochs=int(self.max_iter),
            batch_size=self.batch_size,
            tol=float(self.tol),
            n_iter_no_change=float(self.n_iter_no_change),
            early_stopping=bool(self.early_stopping),
            validation_fraction=float(self.validation_fraction),
            sklearn_warnings=True,
        )

    @property
    def coefs_(self) -> list[np.ndarray]:
        """The weight matrices ``(fan_in, fan_out)`` per layer, as NumPy arrays (copies off the host)."""
        return [host(p["W"]) for p in self.params_ if p]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """The bias vectors per layer, as NumPy arrays."""
        return [host(p["b"]) for p in self.params_ if p]


_PARAMETERS = """
    Parameters
    ----------
    hidden_layer_sizes : array-like of int, default=(100,)
        The width of each hidden layer.
    activation : {{"relu", "tanh", "logistic", "identity"}}, default="relu"
        The hidden layers' activation.
    solver : {{"adam", "sgd"}}, default="adam"
        The optimizer (``pnn.optim.Adam`` or ``pnn.optim.SGD`` with momentum).
    alpha : float, default=1e-4
        Strength of the L2 penalty on the weights (not the biases), divided by the batch's rows
        (by the sum of its sample weights when weighted).
    batch_size : int or "auto", default="auto"
        Rows per step; "auto" is ``min(200, n_samples)``.
    learning_rate_init : float, default=1e-3
        The optimizer's learning rate.
    max_iter : int, default=200
        The most epochs ``fit`` runs.
    shuffle : bool, default=True
        Reshuffle the rows every epoch (the same minibatches as scikit-learn's for a ``random_state``).
    random_state : int, RandomState instance or None, default=None
        Initial weights, the validation split, the batches.
    tol : float, default=1e-4
        An epoch improves when the loss falls (the validation score rises) by at least ``tol``.
    verbose : bool, default=False
        Print each epoch's loss (and validation score).
    warm_start : bool, default=False
        ``fit`` continues from the fitted weights instead of new ones.
    momentum : float, default=0.9
        SGD's momentum, in [0, 1).
    nesterovs_momentum : bool, default=True
        Nesterov's momentum (SGD, momentum > 0).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows (stratified for classes), stop when their score
        stops improving and restore the best epoch's weights.
    validation_fraction : float, default=0.1
        The held-out share with ``early_stopping``.
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's settings.
    n_iter_no_change : int or np.inf, default=10
        Stop after more than this many epochs in a row without an improvement by ``tol``.{extra}
    backend : str or None, default=None
        A portable_nn backend spec such as "torch", "jax:cpu" or "cupy:0". None: the input's library
        and device under scikit-learn's array API dispatch, else portable_nn's default backend.
    dtype : {{"float32", "float64"}}, default="float32"
        The training precision.

    Attributes
    ----------
    ``loss_curve_`` : list of float
        Each epoch's training loss (with the L2 term).
    ``n_iter_``, ``t_`` : int
        Epochs of the last ``fit``, and rows seen in all.
    ``best_loss_``, ``best_validation_score_``, ``validation_scores_``
        As scikit-learn's: the lowest epoch loss (None with ``early_stopping``); with
        ``early_stopping``, the best validation score and each epoch's (a list of float), else None.
    ``coefs_``, ``intercepts_`` : list of ndarray
        The weights ``(fan_in, fan_out)`` and biases ``(fan_out,)`` of each layer, as NumPy arrays.
    ``model_`` : pnn.Sequential
        The network; ``params_`` are its params on ``backend_`` (a backend spec string) in ``dtype_``.
    ``n_features_in_``, ``feature_names_in_``, ``n_layers_``, ``n_outputs_``, ``out_activation_``
        As scikit-learn's.{classes}
"""

class MLPClassifier(ClassifierMixin, ClassifierPart, MLPPart):
    __doc__ = (
        "Multi-layer perceptron classifier (binary, multiclass, multilabel) trained by portable_nn.\n"
        + _PARAMETERS.format(extra=CLASS_WEIGHT_DOC, classes="\n    ``classes_`` : ndarray\n        The class labels.")
    )

    _parameter_constraints: dict[str, list[Any]] = {
        **MLPPart._parameter_constraints, "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *, solver: str = "adam",
        alpha: float = 0.0001, batch_size: int | str = "auto", learning_rate_init: float = 0.001,
        max_iter: int = 200, shuffle: bool = True, random_state: Any = None, tol: float = 1e-4,
        verbose: bool = False, warm_start: bool = False, momentum: float = 0.9, nesterovs_momentum: bool = True,
        early_stopping: bool = False, validation_fraction: float = 0.1, beta_1: float = 0.9,
        beta_2: float = 0.999, epsilon: float = 1e-8, n_iter_no_change: float = 10, class_weight: Any = None,
        backend: Any = None, dtype: str = "float32",
    ) -> None:
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate_init=learning_rate_init, max_iter=max_iter, shuffle=shuffle, random_state=random_state,
            tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
            n_iter_no_change=n_iter_no_change, backend=backend, dtype=dtype,
        )
        self.class_weight = class_weight

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True  # multilabel 0/1 matrices
        return tags


class MLPRegressor(RegressorMixin, RegressorPart, MLPPart):
    __doc__ = (
        "Multi-layer perceptron regressor (one or more outputs) trained by portable_nn.\n"
        + _PARAMETERS.format(extra="", classes="")
    )

    def __init__(  # its own, so that a wrong keyword's TypeError names this class, not a private base
        self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *, solver: str = "adam",
        alpha: float = 0.0001, batch_size: int | str = "auto", learning_rate_init: float = 0.001,
        max_iter: int = 200, shuffle: bool = True, random_state: Any = None, tol: float = 1e-4,
        verbose: bool = False, warm_start: bool = False, momentum: float = 0.9, nesterovs_momentum: bool = True,
        early_stopping: bool = False, validation_fraction: float = 0.1, beta_1: float = 0.9,
        beta_2: float = 0.999, epsilon: float = 1e-8, n_iter_no_change: float = 10, backend: Any = None,
        dtype: str = "float32",
    ) -> None:
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate_init=learning_rate_init, max_iter=max_iter, shuffle=shuffle, random_state=random_state,
            tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
            n_iter_no_change=n_iter_no_change, backend=backend, dtype=dtype,
        )

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
