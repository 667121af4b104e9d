"""Training for the estimators: scikit-learn's losses and an epoch loop that keeps the optimizer state.

The losses take the model's raw outputs (logits for classifiers) and scale
exactly as scikit-learn's MLP does, so ``loss_curve_`` means the same thing
and ``tol`` the same amount:

- :func:`log_loss`: ``-sum(T * log softmax(Y)) / n`` against one-hot T, dY = ``(softmax(Y) - T) / n``;
- :func:`binary_log_loss`: binary cross-entropy summed over the outputs, averaged over the rows;
- :func:`half_squared_error`: ``mean((Y - T)**2) / 2`` with scikit-learn's gradient ``(Y - T) / n``.

:class:`Trainer` runs minibatch epochs from params and an optimizer state the
caller keeps, so ``partial_fit``, ``warm_start`` and per-epoch stopping rules
continue where the last call stopped. Where the backend's library compiles by
default (JAX: ``jax.jit``, through the backend adapter), runs of up to
:data:`CHUNK` steps are compiled once per configuration and batch sizes, and
the inference pass once per model configuration (:func:`forward`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import array_api_compat
import numpy as np

from ..backends import Backend, namespace
from ..layers.base import Array, Layer, Params, config_key, run_backprop, uses_host_rng
from ..losses import binary_cross_entropy_with_logits, reduces

__all__ = ["Penalty", "Trainer", "binary_log_loss", "half_squared_error", "log_loss"]

Penalty = Callable[[Params, Params, int], tuple[Any, Params]]
"""``penalty(params, grads, rows) -> (loss term, grads)``: a regularizer added to each step."""

# Compiled steps by configuration (backend, model configuration, loss, optimizer and penalty, all
# compared by value where they define it), so equal estimators reuse one compiled function and JAX's
# cache: clones in a grid search, successive fits and partial_fits compile once per process and shape.
_COMPILED: dict[Any, Callable[..., Any]] = {}
CHUNK = 8  # steps per compiled call: fewer calls (each costs ~50 us on a CPU) against longer compilation


@reduces("mean")
def log_loss(Y: Array, T: Array) -> tuple[Array, Array]:
    """Multiclass log-loss of logits ``Y`` (n, k) against one-hot targets ``T`` (n, k), as scikit-learn's.

    ``-sum(T * log softmax(Y)) / n``, computed as ``(sum(log S) - sum(T * Z)) / n`` with
    ``Z = Y - max(Y)`` and ``S`` the rows' sums of ``exp(Z)`` (each row of T sums to 1).
    """
    xp = namespace(Y)
    Z = Y - xp.max(Y, axis=1, keepdims=True)
    E = xp.exp(Z)
    S = xp.sum(E, axis=1, keepdims=True)
    n = Y.shape[0]
    return (xp.sum(xp.log(S)) - xp.sum(T * Z)) / n, (E / S - T) / n


@reduces("mean")
def binary_log_loss(Y: Array, T: Array) -> tuple[Array, Array]:
    """Binary and multilabel log-loss of logits ``Y`` (n, k): summed over the k outputs, averaged over rows."""
    value, dY = binary_cross_entropy_with_logits(Y, T)  # mean over n * k elements
    k = Y.shape[1]
    return value * k, dY * k


@reduces("mean")
def half_squared_error(Y: Array, T: Array) -> tuple[Array, Array]:
    """scikit-learn's squared loss ``mean((Y - T)**2) / 2``; its gradient, as scikit-learn takes it, ``(Y - T) / n``."""
    D = Y - T
    xp = namespace(Y)
    return 0.5 * xp.mean(D * D), D / Y.shape[0]


def compiled(be: Backend, key: Any, make: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
    """``be``'s compiler applied to ``make()``, cached under ``key`` (compiled anew when ``key`` is unhashable)."""
    try:
        fn = _COMPILED.get((be.name, key))
    except TypeError:  # an unhashable loss, optimizer or penalty: nothing to share
        return be.adapter.compile(make())
    if fn is None:
        fn = _COMPILED[be.name, key] = be.adapter.compile(make())
    return fn


def forward(be: Backend, model: Layer) -> Callable[[Params, Array], Array] | None:
    """``f(params, X) -> Y`` (inference) compiled for ``be``, or None where its library does not compile by default."""
    if not be.adapter.jit_by_default:
        return None
    return compiled(be, ("forward", config_key(model)), lambda: lambda params, X: model.apply(params, X)[0])


class Trainer:
    """Minibatch epochs of ``model`` under ``loss`` and ``optimizer`` (plus an optional ``penalty``).

    Nothing is kept between calls but the compiled step: the caller holds the
    params and the optimizer state. Each epoch's data order comes from the caller.
    """

    def __init__(self, model: Layer, loss: Callable[..., Any], optimizer: Any, penalty: Penalty | None = None):
        self.model, self.loss, self.optimizer, self.penalty = model, loss, optimizer, penalty
        self._host_rng = uses_host_rng(model)

    def _step(self, params: Params, state: Any, X: Array, T: Array, rng: Any = None) -> tuple[Params, Any, Array]:
        Y, backprop = self.model.apply(params, X, train=True, rng=rng)
        value, dY = self.loss(Y, T)
        _, grads = run_backprop(backprop, dY, need_dX=False)
        if self.penalty is not None:
            extra, grads = self.penalty(params, grads, X.shape[0])
            value = value + extra
        params, state = self.optimizer.step(params, grads, state)
        return params, state, value

    def _chunk(
        self, sizes: tuple[int, ...], params: Params, state: Any, X: Array, T: Array, total: Array
    ) -> tuple[Params, Any, Array]:
        """Steps on consecutive batches of ``sizes`` rows of ``X``, ``T``, adding ``loss * rows`` to ``total``.

        For compiling once per ``sizes``.
        """
        start = 0
        for size in sizes:
            Xb, Tb = X[start : start + size, ...], T[start : start + size, ...]
            params, state, value = self._step(params, state, Xb, Tb)
            total, start = total + value * size, start + size
        return params, state, total

    def epoch(
        self,
        be: Backend,
        params: Params,
        state: Any,
        X: Array,
        T: Array,
        order: np.ndarray | None,
        batch_size: int,
        rng: np.random.Generator | None = None,
    ) -> tuple[Params, Any, float]:
        """One pass over ``X``, ``T`` (on ``be``) in ``order`` (None: as stored) in batches of ``batch_size``.

        Where ``be``'s library compiles by default (JAX) and no layer draws host
        random numbers, each run of up to :data:`CHUNK` steps is one compiled
        call that gathers the rows and adds up the loss (compiled once per run
        of batch sizes, shared by equal estimators: an epoch of 7 batches is one
        call); elsewhere the epoch's rows are gathered once and the batches are
        slices.

        Returns:
            ``(params, state, loss)``: the loss is the mean over rows of each
            batch's loss (weighted by its rows), read to the host once.
        """
        xp, n = be.xp, X.shape[0]
        order = np.arange(n) if order is None else order
        bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
        idx = order if xp is np else xp.asarray(order, device=array_api_compat.device(X))
        X, T = xp.take(X, idx, axis=0), xp.take(T, idx, axis=0)
        if be.adapter.jit_by_default and not self._host_rng:
            key = ("chunk", config_key(self.model), self.loss, self.optimizer, self.penalty)
            acc = xp.zeros((), dtype=X.dtype, device=array_api_compat.device(X))
            for i in range(0, len(bounds), CHUNK):
                run = bounds[i : i + CHUNK]
                sizes = tuple(stop - start for start, stop in run)
                chunk = compiled(be, (*key, sizes), partial(partial, self._chunk, sizes))
                lo, hi = run[0][0], run[-1][1]
                params, state, acc = chunk(params, state, X[lo:hi, ...], T[lo:hi, ...], acc)
            return params, state, float(acc) / n
        total: Any = 0.0
        rng = rng if self._host_rng else None
        for start, stop in bounds:
            params, state, value = self._step(params, state, X[start:stop, ...], T[start:stop, ...], rng)
            total = total + value * (stop - start)
        return params, state, float(total) / n
