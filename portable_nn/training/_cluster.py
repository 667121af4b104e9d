"""The hub exchange of ``fit(..., client=pnn.DataParallel(client, exchange="hub"))``, a runner of the epoch driver.

The default exchange is the all-reduce between the workers (``_allreduce``);
this one, kept for comparison and for clusters the all-reduce cannot use,
sends everything through the client. The rows are cut into one contiguous
shard per worker at the start (``_shards``). Each worker holds an Actor (:class:`~._dask_worker.Replica`) with its shards on its
own backend and device. Each step the client sends the params and each
shard's rows of the global batch (the same batches as one process: the
driver's order); the actors return per-shard sums of the loss and gradients
(:func:`~._step.forward_backward`); the client adds them in shard order,
divides by the batch's rows (``"mean"`` losses), and applies the optimizer
once (:func:`~._step.update`). Dropout masks are drawn
for the whole batch from fit's dropout RNG state (see ``RowsRng``), so
results match one process to rounding (float64: ~1e-15 per step).

A worker lost mid-step (its process killed, its machine gone) has its shards
re-read by the remaining workers and the step is recomputed; the per-shard
sums make the result independent of where a shard lives. Losing every
worker, or the client, raises :class:`ClusterError` with the last completed
step's params.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._errors import ClusterError, FitInterrupted
from .._tree import tree_flatten, tree_map, tree_unflatten
from ..backends import to_numpy
from ..layers.base import Params, trainable
from ._epoch import Loop, nonfinite
from ._precision import loss_scale_of
from ._shards import AllLost, ShardedRunner, call, is_lost, live, worker_backend
from ._source import batch_slices
from ._step import finite_check, update

__all__ = ["ClusterRunner", "worker_backend"]

# called with the number of steps completed so far after each step (tests use it to kill a worker mid-fit)
_after_step: Callable[[int], None] | None = None


class ClusterRunner(ShardedRunner):
    """The steps of each epoch on the cluster's workers, exchanged through the client (see the module docstring)."""

    def __init__(self, client: Any, loop: Loop, micro: int, params: Params) -> None:
        super().__init__(client, loop, micro, params, _replica_class())
        self.steps_done = 0

    def _exchange(
        self, host_params: Any, idx: np.ndarray, rng_state: Any, scale: float | None = None
    ) -> tuple[dict[int, Any], Any]:
        shard_of = np.searchsorted(self.bounds, idx, side="right") - 1
        tasks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for sid in np.unique(shard_of):
            pos = np.flatnonzero(shard_of == sid)
            tasks[int(sid)] = (idx[pos] - self.bounds[sid], pos)
        while True:
            if not live(self.client):
                raise AllLost(f"the client is {self.client.status} (disconnected from the scheduler)")
            if not self.actors:
                raise AllLost("every worker of the cluster was lost")
            mine: dict[str, dict[int, Any]] = {}
            for sid, task in tasks.items():
                mine.setdefault(self.owner[sid], {})[sid] = task
            futs = {w: call(self.actors[w], "step", host_params, t, rng_state, int(idx.shape[0]), self.micro, scale)
                    for w, t in mine.items()}
            parts: dict[int, Any] = {}
            end, lost = None, []
            for w, f in futs.items():
                try:
                    out, end_w = f()
                except Exception as e:
                    if not is_lost(e):
                        raise
                    lost.append(w)
                    continue
                parts.update(out)
                end = end_w if end_w is not None else end
            if not lost:
                return parts, end
            moved = {sid: w for sid, w in self.owner.items() if w in lost}
            if set(self.actors) - set(lost):
                self._warn_lost(lost, moved)
            self._place(moved, lost)

    def run(
        self, params: Params, state: Any, orders: list[np.ndarray | None], epoch: int,
        start: int = 0, total: Any = 0.0, correct: Any = None,
    ) -> tuple[Params, Any, list[tuple[float, Any]]]:
        """One epoch per order (the first from step ``start``); returns params, state, each epoch's
        ``(loss, n_correct)``."""
        stats = []
        for e, order in enumerate(orders):
            params, state, total, correct = self._epoch(
                params, state, order, epoch + e, *((start, total, correct) if e == 0 else ())
            )
            stats.append((self.loop.epoch_loss(total), correct))
        return params, state, stats

    def _epoch(
        self, params: Params, state: Any, order: np.ndarray | None, epoch: int,
        start: int = 0, total: Any = 0.0, correct: Any = None,
    ) -> tuple[Params, Any, float, Any]:
        xp, loop = self.xp, self.loop
        step = start
        try:
            for step, idx in enumerate(batch_slices(self.n, loop.batch_size, order)):
                if step < start:
                    continue
                loop.interrupts.raise_if_pending()
                rows = np.arange(idx.start, idx.stop) if isinstance(idx, slice) else np.asarray(idx)
                host = tree_map(to_numpy, trainable(params))
                rng_state = loop.rng.bit_generator.state if self.uses_rng else None
                scale = loss_scale_of(state)
                parts, end = self._exchange(host, rows, rng_state, None if scale is None else float(scale))
                loss_sum, grads, count, c_sum = 0.0, None, 0, None
                for sid in sorted(parts):  # the fixed order: by shard, wherever the shard lives
                    ls, g, cnt, c = parts[sid]
                    loss_sum += ls
                    count += cnt
                    grads = g if grads is None else [a + b for a, b in zip(grads, g, strict=True)]
                    if c is not None:
                        c_sum = c if c_sum is None else c_sum + c
                assert grads is not None and count == rows.shape[0]
                div = float(count) if loop.reduction != "sum" else 1.0
                g_tree = tree_unflatten(tree_flatten(trainable(params))[1],
                                        [xp.asarray(g / div, device=self.device) for g in grads])
                new_params, new_state = update(self.spec.optimizer, params, g_tree, state)
                value = xp.asarray(loss_sum / div, dtype=self.dtype, device=self.device)
                checked = finite_check(value if scale is None else 0.0, new_params, like=value)  # a skip is no error
                if loop.on_nonfinite != "ignore" and not math.isfinite(float(checked)):
                    nonfinite(loop, params, epoch, step, value)
                if end is not None:
                    loop.rng.bit_generator.state = end
                params, state = new_params, new_state
                total += loss_sum
                if c_sum is not None:
                    correct = c_sum if correct is None else correct + c_sum
                if loop.bar is not None:
                    loop.bar.update(1)
                if loop.on_step is not None:
                    loop.on_step(params, state, epoch, step + 1, total, correct)
                self.steps_done += 1
                if _after_step is not None:
                    _after_step(self.steps_done)
        except AllLost as e:
            raise ClusterError(
                f"fit: {e} at epoch {epoch}, step {step}; the error's .params are those after the last "
                "completed step. Restart the workers (or the client) and fit again from them.",
                params=params, epoch=epoch, step=step, history=loop.history,
            ) from None
        except KeyboardInterrupt as e:
            if isinstance(e, FitInterrupted):
                raise
            raise FitInterrupted(params, loop.history) from e
        return params, state, total, correct

def _replica_class() -> Any:
    from ._dask_worker import Replica

    return Replica
