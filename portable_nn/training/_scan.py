"""fit's compiled-loop fast path on JAX: chunks of epochs run inside one ``jax.lax.scan``.

A Python-driven loop pays a dispatch per step (tens of microseconds); a loop
compiled whole pays it once per chunk of epochs. Used by :func:`fit` when the
step is jitted (JAX, no host randomness): each epoch scans its full batches,
then runs the smaller last batch, if any, inside the same compiled call. The
step body is the portable one (the model's forward and backprop, the
optimizer's ``step``), so results agree with the per-step path to rounding.

Chunks are bounded in wall time (:class:`ChunkSizer`, about a second each), so
Ctrl-C, which Python can only honour between compiled calls, stops fit within
about a chunk. A chunk's epoch count is a traced argument over a buffer padded
to a power of two, so one fit compiles at most two loops.

The step's :class:`~._step.StepSpec` (with its configuration key, so a layer
setting changed in place recompiles) is a static argument of one
module-level function, so JAX's own compilation cache serves later ``fit``
calls with the same model, loss, optimizer settings and shapes.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..layers.base import Array, Params
from ._source import MemorySource
from ._step import StepSpec, fit_step, n_correct

__all__ = ["ChunkSizer", "ScanRunner", "run_scanned"]


class ChunkSizer:
    """How many epochs the next compiled call runs, so that one call takes about ``seconds``.

    The first calls run one epoch each; once a call that did not compile has
    been timed, chunks grow to the largest power of two of epochs that fits
    ``seconds`` (never past the epochs left).
    """

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds
        self.per_epoch: float | None = None
        self._compiled: set[int] = set()

    def next(self, remaining: int) -> tuple[int, int]:
        """``(epochs, padded)``: epochs to run now, and the compiled buffer's size (a power of two)."""
        if self.per_epoch is None:
            return 1, 1
        cap = _pow2_floor(max(1.0, self.seconds / max(self.per_epoch, 1e-9)))
        padded = min(cap, _pow2_ceil(remaining))
        return min(remaining, padded), padded

    def observe(self, epochs: int, padded: int, seconds: float) -> None:
        """Record a call's wall time; a call that compiled its loop (first of its size) is not a measurement."""
        if padded in self._compiled:
            self.per_epoch = seconds / epochs
        self._compiled.add(padded)


def _pow2_floor(x: float) -> int:
    return 1 << (int(x).bit_length() - 1)


def _pow2_ceil(k: int) -> int:
    return 1 << (k - 1).bit_length()


def run_scanned(
    spec: StepSpec, params: Params, state: Any, data: MemorySource, orders: np.ndarray,
    batch_size: int, padded: int, sizer: ChunkSizer | None = None,
) -> tuple[Params, Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train ``len(orders)`` epochs in one compiled call.

    Args:
        data: the in-memory training data (inputs, targets, sample weights) on a JAX device.
        orders: ``(epochs, n)`` host row orders, one per epoch (``n >= batch_size``).
        padded: the compiled buffer's epochs (>= ``len(orders)``); see :class:`ChunkSizer`.
        sizer: told the call's wall time.

    Returns:
        ``(params, state, losses, checks, correct, weights)``: host arrays of
        shape ``(epochs, steps_per_epoch)``: each step's loss, finiteness check
        value (loss + sum of the updated params), correct predictions and
        weight (its rows, or the sum of its sample weights).
    """
    import jax
    import jax.numpy as jnp

    k = orders.shape[0]
    fn = jax.jit(_epochs, static_argnums=(0, 1, 2))
    X, Y, W = data.X, data.Y, data.W
    device = list(X.devices())[0]
    full = np.concatenate([orders, np.repeat(orders[-1:], padded - k, axis=0)]) if padded > k else orders
    orders_dev = jax.device_put(full, device)
    if not all(isinstance(leaf, jax.Array) for leaf in jax.tree_util.tree_leaves(state)):
        state = jax.device_put(state, device)  # Python counts and scales as arrays: the first call compiles once
    active = jax.device_put(jnp.asarray(k, dtype=jnp.int32), device)
    start = time.perf_counter()
    (params, state), (losses, checks, correct, weights) = fn(
        spec, spec.key(), batch_size, params, state, X, Y, W, orders_dev, active,
    )
    checks = np.asarray(checks)[:k]  # waits for the call
    if sizer is not None:
        sizer.observe(k, padded, time.perf_counter() - start)
    return (params, state, np.asarray(losses, dtype=np.float64)[:k], checks, np.asarray(correct)[:k],
            np.asarray(weights, dtype=np.float64)[:k])


def _epochs(
    spec: StepSpec, spec_key: Any, batch_size: int, params: Params, state: Any,
    X_all: Array, Y_all: Array, W_all: Array | None, orders: Array, active: Array,
) -> Any:
    """Traced by ``jax.jit``: scan over the first ``active`` epochs of ``orders``; each scans its
    full batches, then the rest. The padded epochs after ``active`` are skipped by ``lax.cond``.

    ``spec_key`` (:meth:`StepSpec.key`) is unused in the body: as a static argument it is part of
    the compilation cache's key, so a layer setting changed in place recompiles."""
    del spec_key
    import jax
    import jax.numpy as jnp

    full = orders.shape[1] // batch_size * batch_size

    def one_step(carry: Any, batch: Any) -> tuple[Any, Any]:
        p, s = carry
        Xb, Tb, Wb = batch
        value, Yp, p, s, check = fit_step(spec, p, s, Xb, Tb, None, True, Wb)
        correct = n_correct(jnp, Yp, Tb)
        weight = jnp.asarray(Xb.shape[0], dtype=value.dtype) if Wb is None else jnp.sum(Wb)
        return (p, s), (value, check, jnp.asarray(0) if correct is None else correct, weight)

    def rows(A: Array | None, idx: Array, shape: tuple[int, ...]) -> Array | None:
        return None if A is None else jnp.take(A, idx, axis=0).reshape(shape + tuple(A.shape[1:]))

    def epoch(carry: Any, order: Any) -> tuple[Any, Any]:
        head = order[:full]
        carry, out = jax.lax.scan(one_step, carry, tuple(rows(A, head, (-1, batch_size)) for A in (X_all, Y_all, W_all)))
        if full < order.shape[0]:  # the smaller last batch
            tail = order[full:]
            carry, last = one_step(carry, tuple(rows(A, tail, (-1,)) for A in (X_all, Y_all, W_all)))
            out = tuple(jnp.concatenate([o, jnp.reshape(v, (1,))]) for o, v in zip(out, last, strict=True))
        return carry, out

    shapes = jax.eval_shape(lambda c, o: epoch(c, o)[1], (params, state), orders[0])

    def skip(carry: Any, order: Any) -> tuple[Any, Any]:
        return carry, tuple(jnp.zeros(s.shape, s.dtype) for s in shapes)

    def maybe_epoch(carry: Any, xs: Any) -> tuple[Any, Any]:
        i, order = xs
        return jax.lax.cond(i < active, epoch, skip, carry, order)  # type: ignore[no-any-return]

    return jax.lax.scan(maybe_epoch, (params, state), (jnp.arange(orders.shape[0]), orders))


class ScanRunner:
    """The compiled runner on JAX: chunks of epochs per call; a chunk with a NaN/inf is replayed step by step
    by ``replay`` (the portable :class:`~._epoch.StepRunner`), which stops at the bad step with the params
    before it."""

    def __init__(self, replay: Any, *, one_epoch: bool = False, seconds: float = 1.0) -> None:
        self.replay = replay
        self.one_epoch = one_epoch
        self.sizer = ChunkSizer(seconds)
        self._padded = 1

    def chunk(self, remaining: int) -> int:
        """Epochs the next :meth:`run` covers: bounded in wall time by the :class:`ChunkSizer`,
        and one when ``one_epoch`` (fit validates or watches patience after every epoch)."""
        if self.one_epoch:
            self._padded = 1
            return 1
        k, self._padded = self.sizer.next(remaining)
        return k

    def run(
        self, params: Params, state: Any, orders: list[np.ndarray | None], epoch: int,
        start: int = 0, total: Any = 0.0, correct: Any = None,
    ) -> tuple[Params, Any, list[tuple[float, Any]]]:
        """Train one epoch per order in one compiled call. Returns params, state, each epoch's ``(loss, n_correct)``.

        A resumed epoch that starts mid-way (``start > 0``) runs step by step.
        """
        loop = self.replay.loop
        if start > 0:
            return self.replay.run(params, state, orders, epoch, start, total, correct)  # type: ignore[no-any-return]
        data = loop.source
        full = np.stack([np.arange(data.n) if o is None else o for o in orders])
        new_params, new_state, losses, checks, correct, weights = run_scanned(
            loop.trainer.spec, params, state, data, full, loop.batch_size, self._padded, self.sizer
        )
        if loop.on_nonfinite != "ignore" and not np.isfinite(checks).all():
            return self.replay.run(params, state, orders, epoch)  # type: ignore[no-any-return]
        if loop.bar is not None:
            loop.bar.update(losses.size)
        if loop.batch_weight == "rows":  # each batch by its rows: full batches, then the rest
            weights = np.full(losses.shape, float(loop.batch_size))
            weights[:, -1] = data.n - (losses.shape[1] - 1) * loop.batch_size
        totals = losses.sum(axis=1) if loop.reduction == "sum" else (losses * weights).sum(axis=1)
        return new_params, new_state, [
            (loop.epoch_loss(totals[e]), correct[e].sum() if data.counts_correct else None)
            for e in range(len(orders))
        ]

    def close(self) -> None:
        """Nothing to release."""
