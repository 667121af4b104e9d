"""The worker side of ``fit(..., client=...)``: a Dask Actor holding row shards and a params replica.

Each step the client sends the params and, per shard, the rows of the global
batch that the shard holds; the actor returns, per shard, the *sum* of the
loss and of the gradients over those rows, and their count. Sums are kept
per shard (not per worker), so the client's fixed-order reduction does not
depend on which worker holds which shard: a shard moved to another worker
after a failure gives the same numbers.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from .._tree import tree_leaves, tree_map
from ..backends import get_backend, to_numpy
from ..layers.base import Array
from ._data import as_data, check_finite
from ._step import StepSpec, forward_backward, n_correct

__all__ = ["Replica", "RowsRng"]


class RowsRng(np.random.Generator):
    """A Generator that draws the *whole* global batch's random numbers and hands out some rows.

    Dropout draws ``random(X.shape)`` with rows first; this draws
    ``(batch_rows, *X.shape[1:])`` from the same state as the one-process run
    and returns the rows at ``pos``, so masks do not depend on how rows are
    split over workers or micro-batches.
    """

    def __init__(self, state: dict[str, Any], batch_rows: int, pos: np.ndarray) -> None:
        bits = getattr(np.random, state["bit_generator"])()
        bits.state = state
        super().__init__(bits)
        self.batch_rows, self.pos = batch_rows, pos

    def random(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> Any:  # type: ignore[override]
        shape = (size,) if isinstance(size, int) else tuple(size)
        full = super().random((self.batch_rows, *shape[1:]), dtype=dtype)
        return full[self.pos]


class Replica:
    """One worker's shards and model; created by ``client.submit(Replica, ..., actor=True)``."""

    def __init__(self, spec: StepSpec, backend: str, dtype: str, reduction: str, indices: bool) -> None:
        self.spec, self.reduction, self.indices = spec, reduction, indices
        self.be = get_backend(backend)
        self.dtype = self.be.dtype(dtype)
        self.shards: dict[int, tuple[Array, Array]] = {}

    def add_shard(self, sid: int, X: Any, Y: Any) -> int:
        """Keep rows ``X, Y`` (host arrays, or Dask arrays read here) on this worker's backend and device
        (see ``_cluster.worker_backend``); returns rows."""
        if not isinstance(X, np.ndarray):  # a Dask slice: read it here, from its source (e.g. a Zarr store)
            import dask

            X, Y = dask.compute(X, Y, scheduler="sync")
        xp, device = self.be.xp, self.be.device
        Xd = as_data("fit", "X", np.asarray(X), xp, device, self.dtype, labels_ok=False, indices=self.indices)
        Yd = as_data("fit", "Y", np.asarray(Y), xp, device, self.dtype, labels_ok=True)
        check_finite("fit", "X", Xd, xp)  # Dask data are read here first (labels were checked at fit's entry)
        check_finite("fit", "Y", Yd, xp)
        self.shards[sid] = (Xd, Yd)
        return int(Xd.shape[0])

    def shard_ids(self) -> list[int]:
        return sorted(self.shards)

    def describe(self) -> dict[str, Any]:
        """Where this replica works: its backend and device, and per shard the array type, device and whether
        it is an array of the replica's library (e.g. ``cupy.ndarray`` on ``cuda:0``); for checks such as
        ``scripts/dask_gpu_check.py``."""
        ad = self.be.adapter
        shards = {
            sid: {"type": f"{type(X).__module__}.{type(X).__name__}", "owned": bool(ad.owns(X) and ad.owns(Y)),
                  "device": ad.device_label(array_api_compat.device(X)), "rows": int(X.shape[0])}
            for sid, (X, Y) in sorted(self.shards.items())
        }
        return {"backend": self.be.name, "device": self.be.device_label, "hardware": self.be.describe_device(),
                "shards": shards}

    def shard_sums(
        self, p: Any, sid: int, rows: np.ndarray, pos: np.ndarray, rng_state: dict[str, Any] | None,
        batch_rows: int, micro: int, loss_scale: float | None = None,
    ) -> tuple[Array, list[Array], Array | None, Any]:
        """Shard ``sid``'s part of a batch: its local ``rows``, at places ``pos`` in the global batch of
        ``batch_rows`` rows, in ``micro`` micro-batches, on params ``p`` (this replica's arrays).

        Returns the loss sum (0-d; the loss times the rows for a ``"mean"`` loss), the gradient sums (one
        array per leaf, in ``tree_leaves`` order), the correct predictions (0-d, or None for targets that
        are not labels) and the dropout RNG's state after the batch (None without ``rng_state``). With a
        ``loss_scale`` (a loss-scaled optimizer's), the gradients are those of the scaled loss.
        """
        xp, device = self.be.xp, self.be.device
        X, Y = self.shards[sid]
        loss_sum: Any = 0.0
        grads: list[Any] | None = None
        correct: Any = None
        end = None
        for part in np.array_split(np.arange(rows.shape[0]), min(micro, rows.shape[0])):
            r = rows[part]
            Xb = X[r, ...] if xp is np else xp.take(X, xp.asarray(r, device=device), axis=0)
            Tb = Y[r, ...] if xp is np else xp.take(Y, xp.asarray(r, device=device), axis=0)
            rng = None if rng_state is None else RowsRng(rng_state, batch_rows, pos[part])
            Yp, value, g, _ = forward_backward(self.spec, p, Xb, Tb, rng, None, loss_scale)
            scale = float(r.shape[0]) if self.reduction != "sum" else 1.0
            leaves = [a * scale for a in tree_leaves(g)] if scale != 1.0 else tree_leaves(g)
            grads = leaves if grads is None else [a + b for a, b in zip(grads, leaves, strict=True)]
            loss_sum = loss_sum + value * scale
            c = n_correct(xp, Yp, Tb)
            if c is not None:
                correct = c if correct is None else correct + c
            if rng is not None:
                end = rng.bit_generator.state
        assert grads is not None
        return loss_sum, grads, correct, end

    def step(
        self, params: Any, tasks: dict[int, tuple[np.ndarray, np.ndarray]], rng_state: dict[str, Any] | None,
        batch_rows: int, micro: int, loss_scale: float | None = None,
    ) -> tuple[dict[int, tuple[float, list[np.ndarray], int, int | None]], Any]:
        """Per shard ``sid`` with ``(rows, pos)`` (its local rows, their places in the global batch):
        ``(loss sum, grad sums as host leaves, row count, correct or None)``; and the dropout RNG's state after
        the batch (None without ``rng_state``)."""
        xp, device = self.be.xp, self.be.device
        p = tree_map(lambda a: xp.asarray(a, device=device), params)
        out = {}
        end = None
        for sid in sorted(tasks):
            rows, pos = tasks[sid]
            loss_sum, grads, correct, end_s = self.shard_sums(p, sid, rows, pos, rng_state, batch_rows, micro,
                                                              loss_scale)
            end = end_s if end_s is not None else end
            out[sid] = (float(loss_sum), [np.asarray(to_numpy(a)) for a in grads], int(rows.shape[0]),
                        None if correct is None else int(correct))
        return out, end
