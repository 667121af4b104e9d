"""fit's compiled-loop fast path on JAX: whole epochs run inside one ``jax.lax.scan``.

A Python-driven loop pays a dispatch per step (tens of microseconds); a loop
compiled whole pays it once per chunk of epochs. Used by :func:`fit` when the
step is jitted (JAX, no dropout): each epoch scans its full batches, then runs
the smaller last batch, if any, inside the same compiled call. The step body is
the portable one (:func:`~portable_nn.step.grads_and_loss` and the optimizer's
``step``), so results agree with the per-step path to rounding.

The model (with its repr, so a layer setting changed in place recompiles),
loss and optimizer are static arguments of one module-level function, so
JAX's own compilation cache serves later ``fit`` calls with the same model,
loss, optimizer settings and shapes without recompiling.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._layer import Array, Layer, Params
from .step import TrainStep, grads_and_loss, n_correct

__all__ = ["run_scanned"]


def run_scanned(
    trainer: TrainStep, params: Params, state: Any, X: Array, Y: Array, orders: np.ndarray, batch_size: int
) -> tuple[Params, Any, np.ndarray, np.ndarray, np.ndarray]:
    """Train ``len(orders)`` epochs in one compiled call.

    Args:
        orders: ``(epochs, n)`` host row orders, one per epoch (``n >= batch_size``).

    Returns:
        ``(params, state, totals, checks, correct)``: host arrays; ``totals``
        ``(epochs,)`` is each epoch's summed loss x rows; ``checks`` and
        ``correct`` ``(epochs, steps_per_epoch)`` are each step's finiteness
        check value (loss + sum of grads) and correct predictions.
    """
    import jax

    fn = jax.jit(_epochs, static_argnums=(0, 1, 2, 3, 4))
    device = list(X.devices())[0]
    orders_dev = jax.device_put(orders, device)
    model = trainer.model  # its repr joins the cache key: a layer setting changed in place recompiles
    (params, state), (losses, checks, correct) = fn(
        model, repr(model), trainer.loss, trainer.optimizer, batch_size, params, state, X, Y, orders_dev
    )
    n = orders.shape[1]
    full, rest = divmod(n, batch_size)
    rows = np.array([batch_size] * full + [rest] * (rest > 0), dtype=np.float64)
    totals = (np.asarray(losses, dtype=np.float64) * rows).sum(axis=1)
    return params, state, totals, np.asarray(checks), np.asarray(correct)


def _epochs(
    model: Layer, model_repr: str, loss: Any, optimizer: Any, batch_size: int, params: Params, state: Any,
    X_all: Array, Y_all: Array, orders: Array,
) -> Any:
    """Traced by ``jax.jit``: scan over epochs; each scans its full batches, then the rest."""
    import jax
    import jax.numpy as jnp

    full = orders.shape[1] // batch_size * batch_size

    def one_step(carry: Any, batch: Any) -> tuple[Any, Any]:
        p, s = carry
        Xb, Tb = batch
        value, Yp, grads, check = grads_and_loss(model, loss, p, Xb, Tb)
        p, s = optimizer.step(p, grads, s)
        correct = n_correct(jnp, Yp, Tb)
        return (p, s), (value, check, jnp.asarray(0) if correct is None else correct)

    def rows(A: Array, idx: Array, shape: tuple[int, ...]) -> Array:
        return jnp.take(A, idx, axis=0).reshape(shape + tuple(A.shape[1:]))

    def epoch(carry: Any, order: Any) -> tuple[Any, Any]:
        head = order[:full]
        batches = (rows(X_all, head, (-1, batch_size)), rows(Y_all, head, (-1, batch_size)))
        carry, out = jax.lax.scan(one_step, carry, batches)
        if full < order.shape[0]:  # the smaller last batch
            tail = order[full:]
            carry, last = one_step(carry, (jnp.take(X_all, tail, axis=0), jnp.take(Y_all, tail, axis=0)))
            out = tuple(jnp.concatenate([o, jnp.reshape(v, (1,))]) for o, v in zip(out, last, strict=True))
        return carry, out

    return jax.lax.scan(epoch, (params, state), orders)
