"""fit's compiled-loop fast path on JAX: whole epochs run inside one ``jax.lax.scan``.

A Python-driven loop pays a dispatch per step (tens of microseconds); a loop
compiled whole pays it once per chunk of epochs. Used by :func:`fit` when the
step is jitted (JAX, no dropout) and every batch has the same size. The step
body is the portable one (:func:`~portable_nn.step.grads_and_loss` and the
optimizer's ``step``), so results agree with the per-step path to rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._layer import Array, Params
from .step import TrainStep, grads_and_loss, n_correct

__all__ = ["run_scanned"]


def run_scanned(
    trainer: TrainStep, params: Params, state: Any, X: Array, Y: Array, orders: np.ndarray, batch_size: int
) -> tuple[Params, Any, np.ndarray, np.ndarray, np.ndarray]:
    """Train ``len(orders)`` epochs in one compiled call.

    Args:
        orders: ``(epochs, n)`` host row orders, one per epoch (``n`` divisible by ``batch_size``).

    Returns:
        ``(params, state, losses, checks, correct)``; the last three are host
        arrays of shape ``(epochs, steps_per_epoch)``: each step's loss, its
        finiteness check value (loss + sum of grads) and its correct predictions.
    """
    import jax
    import jax.numpy as jnp

    epochs, n = orders.shape
    steps = n // batch_size
    def one_step(carry: Any, batch: Any) -> tuple[Any, Any]:
        p, s = carry
        Xb, Tb = batch
        value, Yp, grads, check = grads_and_loss(trainer.model, trainer.loss, p, Xb, Tb)
        p, s = trainer.optimizer.step(p, grads, s)
        correct = n_correct(jnp, Yp, Tb)
        return (p, s), (value, check, jnp.asarray(0) if correct is None else correct)

    def run(p: Any, s: Any, X_all: Any, Y_all: Any, orders_dev: Any) -> Any:
        return jax.lax.scan(lambda c, o: _epoch(c, o, X_all, Y_all), (p, s), orders_dev)

    def _epoch(carry: Any, order: Any, X_all: Any, Y_all: Any) -> tuple[Any, Any]:
        Xs = jnp.take(X_all, order, axis=0).reshape((steps, batch_size) + tuple(X_all.shape[1:]))
        Ts = jnp.take(Y_all, order, axis=0).reshape((steps, batch_size) + tuple(Y_all.shape[1:]))
        return jax.lax.scan(one_step, carry, (Xs, Ts))  # type: ignore[no-any-return]

    fn = trainer._fn("jax.jit", f"scan:{steps}x{batch_size}", run)  # compiled once per trainer and shape
    device = list(X.devices())[0]
    (params, state), (losses, checks, correct) = fn(params, state, X, Y, jax.device_put(orders, device))
    return params, state, np.asarray(losses), np.asarray(checks), np.asarray(correct)
