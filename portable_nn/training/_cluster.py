"""Data-parallel fit on a Dask cluster: ``fit(..., client=client)``, a runner of the epoch driver.

The rows are cut into one contiguous shard per worker at the start. Each
worker holds an Actor (:class:`~._dask_worker.Replica`) with its shards on its
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
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

from .._check import dtype_name
from .._errors import ClusterError, FitInterrupted
from .._tree import tree_leaves, tree_map
from ..backends import adapter_of, to_numpy
from ..layers.base import Params, has_state, takes_indices, trainable, uses_host_rng
from ._dask_data import DaskSource
from ._data import params_backend
from ._epoch import Loop, nonfinite
from ._precision import loss_scale_of
from ._source import MemorySource, batch_slices
from ._step import finite_check, update

__all__ = ["ClusterRunner", "worker_backend"]

# called with the number of steps completed so far after each step (tests use it to kill a worker mid-fit)
_after_step: Callable[[int], None] | None = None


class _AllLost(Exception):
    pass


def _is_lost(e: BaseException) -> bool:
    """An actor call failed because its worker is gone (not because the step raised)."""
    return isinstance(e, OSError) or (isinstance(e, RuntimeError) and "lost" in str(e).lower()) or \
        type(e).__name__ in ("CancelledError", "FutureCancelledError")


class ClusterRunner:
    """The steps of each epoch on the cluster's workers (see the module docstring)."""

    def __init__(self, client: Any, loop: Loop, micro: int, params: Params) -> None:
        try:
            from distributed import Client
        except ImportError as e:
            raise ImportError(f"fit: client= needs distributed: pip install 'portable_nn[dask]' ({e}).") from None
        if not isinstance(client, Client):
            raise TypeError(f"fit: client must be a distributed.Client, got {type(client).__name__}.")
        if client.status not in ("running", "connecting", "newly-created"):
            raise ValueError(
                f"fit: the client is {client.status}; pass an open distributed.Client (e.g. inside "
                "'with Client(cluster) as client:')."
            )
        spec = loop.trainer.spec
        if has_state(spec.model):
            raise ValueError(
                f"fit: {spec.model!r} has layers with batch statistics (a model state, e.g. BatchNorm), which "
                "client= does not support: each worker would see only its rows' statistics. Use LayerNorm, "
                "or train in one process."
            )
        data = loop.source
        if data.weighted:
            raise ValueError("fit: sample_weight with client= is not supported; train in one process.")
        self.client, self.loop, self.spec, self.micro = client, loop, spec, micro
        self.uses_rng = uses_host_rng(spec.model)
        self.xp, self.device, self.dtype = params_backend(trainable(params), "fit")
        backend = worker_backend(tree_leaves(params)[0])
        workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        if not workers:
            raise ValueError("fit: the client's cluster has no workers; start some (e.g. LocalCluster(n_workers=2)).")
        self.n = data.n
        if isinstance(data, MemorySource):
            Xh, Yh = to_numpy(data.X), to_numpy(data.Y)
            self._source: Callable[[int, int], tuple[Any, Any]] = lambda lo, hi: (Xh[lo:hi], Yh[lo:hi])
        else:
            assert isinstance(data, DaskSource)
            Xd, Yd = data.data.X, data.data.Y
            self._source = lambda lo, hi: (Xd[lo:hi], Yd[lo:hi])
        n_shards = min(len(workers), self.n)
        self.bounds = np.array([self.n * i // n_shards for i in range(n_shards + 1)], dtype=np.int64)
        tag = uuid.uuid4().hex[:8]
        self.futures = {
            w: client.submit(_replica_class(), spec, backend, dtype_name(self.dtype), loop.reduction,
                             takes_indices(spec.model), actor=True, workers=[w], allow_other_workers=False,
                             pure=False, key=f"pnn-replica-{tag}-{i}")
            for i, w in enumerate(workers)
        }
        self.actors: dict[str, Any] = {}
        self.owner: dict[int, str] = {}
        lost = []
        for w, f in self.futures.items():
            try:
                self.actors[w] = f.result()
            except Exception as e:
                if not _is_lost(e):
                    raise
                lost.append(w)
        pending = {sid: workers[sid % len(workers)] for sid in range(n_shards)}
        try:
            self._place(pending, lost)
        except BaseException:
            self.close()  # free the actors and the shards already loaded
            raise
        self.steps_done = 0

    def chunk(self, remaining: int) -> int:
        """Epochs the next :meth:`run` covers."""
        return 1

    def _place(self, shards: dict[int, str], lost: list[str]) -> None:
        """Load each shard on its worker; shards of workers that fail are moved to the least-loaded others."""
        while True:
            for w in lost:
                self.actors.pop(w, None)
                self.futures.pop(w, None)
            if not self.actors:
                raise _AllLost("every worker of the cluster was lost")
            shards = {sid: (w if w in self.actors else self._least_loaded()) for sid, w in shards.items()}
            calls = []
            for sid, w in sorted(shards.items()):
                lo, hi = int(self.bounds[sid]), int(self.bounds[sid + 1])
                calls.append((sid, w, _call(self.actors[w], "add_shard", sid, *self._source(lo, hi))))
                self.owner[sid] = w
            lost, retry = [], {}
            for sid, w, fut in calls:
                try:
                    fut()
                except ValueError as e:  # bad data: rows in the message count from the shard's start
                    lo, hi = int(self.bounds[sid]), int(self.bounds[sid + 1])
                    raise ValueError(
                        f"{e} (in shard {sid}, rows {lo}..{hi - 1} of the data: the row above counts from "
                        "the shard's start)"
                    ) from None
                except Exception as e:
                    if not _is_lost(e):
                        raise
                    lost.append(w)
                    retry[sid] = w
            if not lost:
                return
            if set(self.actors) - set(lost):
                self._warn_lost(lost, retry)
            shards = retry

    def _least_loaded(self) -> str:
        rows = {w: 0 for w in self.actors}
        for sid, w in self.owner.items():
            if w in rows:
                rows[w] += int(self.bounds[sid + 1] - self.bounds[sid])
        return min(sorted(rows), key=rows.__getitem__)

    def _warn_lost(self, lost: list[str], shards: dict[int, str]) -> None:
        warnings.warn(
            f"fit: lost worker(s) {', '.join(sorted(set(lost)))}; moving shard(s) {sorted(shards)} to the "
            f"remaining {len(self.actors) - len(set(lost) & set(self.actors))} worker(s) and recomputing the step.",
            RuntimeWarning, stacklevel=4,
        )

    def _exchange(self, host_params: Any, idx: np.ndarray, rng_state: Any, scale: float | None) -> tuple[dict[int, Any], Any]:
        shard_of = np.searchsorted(self.bounds, idx, side="right") - 1
        tasks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for sid in np.unique(shard_of):
            pos = np.flatnonzero(shard_of == sid)
            tasks[int(sid)] = (idx[pos] - self.bounds[sid], pos)
        while True:
            if self.client.status not in ("running", "connecting", "newly-created"):
                raise _AllLost(f"the client is {self.client.status} (disconnected from the scheduler)")
            if not self.actors:
                raise _AllLost("every worker of the cluster was lost")
            mine: dict[str, dict[int, Any]] = {}
            for sid, task in tasks.items():
                mine.setdefault(self.owner[sid], {})[sid] = task
            futs = {w: _call(self.actors[w], "step", host_params, t, rng_state, int(idx.shape[0]), self.micro, scale)
                    for w, t in mine.items()}
            parts: dict[int, Any] = {}
            end, lost = None, []
            for w, f in futs.items():
                try:
                    out, end_w = f()
                except Exception as e:
                    if not _is_lost(e):
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
                g_tree = _unflatten(trainable(params), [xp.asarray(g / div, device=self.device) for g in grads])
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
        except _AllLost as e:
            raise ClusterError(
                f"fit: {e} at epoch {epoch}, step {step}; the error's .params are those after the last "
                "completed step. Restart the workers (or the client) and fit again from them.",
                params=params, epoch=epoch, step=step, history=loop.history,
            ) from None
        except KeyboardInterrupt as e:
            if isinstance(e, FitInterrupted):
                raise
            raise FitInterrupted(params, loop.history, state) from e
        return params, state, total, correct

    def close(self) -> None:
        """Drop the actors (their workers delete them and the shards)."""
        self.actors.clear()
        for f in self.futures.values():
            try:
                f.release()
            except Exception:  # a lost worker or a closed client: nothing left to free
                pass
        self.futures.clear()


def worker_backend(leaf: Any) -> str:
    """The backend spec (``"name:device"``) of the workers' replicas for params like ``leaf``.

    The params' library and device, except that a GPU is each worker's first
    visible GPU (``"cuda:0"``, ``"gpu:0"``): dask-cuda's ``LocalCUDACluster``
    gives every worker its own GPU as device 0 (``CUDA_VISIBLE_DEVICES``), so
    the client's GPU index means nothing on a worker. Without this a worker
    would use the library's default device (torch and JAX: the CPU).
    """
    ad = adapter_of(leaf)
    if ad is None:
        return "numpy"
    device = array_api_compat.device(leaf)
    label = ad.device_label(device)
    if ad.is_gpu(device):
        label = label.rpartition(":")[0] + ":0"
    return f"{ad.name}:{label}"


def _unflatten(like: Params, leaves: list[Any]) -> Params:
    """``leaves`` (in ``tree_leaves`` order) in the structure of ``like``."""
    it = iter(leaves)
    return tree_map(lambda _: next(it), like)


def _call(actor: Any, method: str, *args: Any) -> Callable[[], Any]:
    """Start ``actor.method(*args)``; returns a function giving its result (raising what the call raised,
    also when starting it failed: an actor whose worker is already known lost raises on attribute access)."""
    try:
        fut = getattr(actor, method)(*args)
    except Exception as e:
        err = e

        def fail() -> Any:
            raise err

        return fail
    return fut.result  # type: ignore[no-any-return]


def _replica_class() -> Any:
    from ._dask_worker import Replica

    return Replica
