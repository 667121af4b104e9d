"""The worker side of the all-reduce exchange: a Dask Actor that runs whole chunks of steps.

A :class:`Member` holds its row shards (as a :class:`~._dask_worker.Replica`),
a params replica and an optimizer-state replica on the params' backend and
device, and a process group with the other workers (``_collective``). Given a
chunk (the epochs' row orders), it runs the steps itself: per step, the sums
of the loss and gradients over its shards' rows of the global batch (shard by
shard in shard order), flattened into one buffer with the loss, the correct
count and a stop flag; one all-reduce; then every member applies the same
optimizer step (:func:`~._step.update`) to identical replicas. The client
sends nothing per step.

Stopping is decided together: a member asked to stop (Ctrl-C on the client)
sets the flag in its next buffer, and after that step's sum every member sees
it and stops at the same step. At each epoch's end the members all-gather a
checksum of their params and stop with ``"drift"`` when they differ.

A member keeps the point before its last step as well (params, state, RNG,
position: references, no copy), so that after a failure the survivors can be
brought to the same step: a peer lost during a step's sum may leave some
survivors one step ahead of others.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._check import dtype_name
from .._tree import tree_flatten, tree_leaves, tree_map, tree_unflatten
from ..backends import adapter_of, to_numpy, widest_float_dtype
from ..layers.base import apply_model
from ._collective import JOIN_TIMEOUT, CollectiveError, Group, Rendezvous, gpu_identity, nccl_problem
from ._dask_worker import Replica, RowsRng
from ._handoff import Parcel, discard, pack
from ._precision import loss_scale_of
from ._step import StepSpec, finite_check, update

__all__ = ["ArraySpec", "Member", "skeleton"]

# test hook, set in a worker process: called after each completed step with the steps done and the member
_after_step: Callable[[int, Member], None] | None = None


@dataclass(frozen=True)
class Point:
    """Where a member is: replicas and bookkeeping after ``done`` steps of the fit.

    ``e``: the epoch in progress, counted within the chunk; ``step``: its completed steps; ``total``,
    ``correct``: its loss total and correct count so far; ``epochs``: the chunk's completed epochs'
    ``(total, correct)``; ``rng``: the dropout RNG's state (None without dropout).
    """

    params: Any
    state: Any
    rng: Any
    e: int
    step: int
    done: int
    total: float
    correct: int | None
    epochs: tuple[tuple[float, int | None], ...] = ()


def _to_host(a: Any) -> Any:
    return np.asarray(to_numpy(a)) if adapter_of(a) is not None else a


class ArraySpec:
    """An array's shape and dtype name: what a member allocates for a broadcast to fill."""

    __slots__ = ("dtype", "shape")

    def __init__(self, shape: tuple[int, ...], dtype: str) -> None:
        self.shape, self.dtype = shape, dtype


def skeleton(tree: Any) -> Any:
    """``tree`` with each array replaced by its :class:`ArraySpec` (Python numbers kept)."""
    return tree_map(lambda a: ArraySpec(tuple(a.shape), dtype_name(a.dtype)) if adapter_of(a) is not None else a,
                    tree)


class Member(Replica):
    """One worker of the all-reduce (see the module docstring); created by ``client.submit(..., actor=True)``.

    Args (after :class:`Replica`'s): ``setup``: ``batch_size``, ``micro``, ``bounds`` (the shards' row
    bounds), ``n`` (rows), ``uses_rng``, ``counts_correct``, ``check`` (NaN/inf check each step),
    ``timeout`` (seconds a collective may wait).
    """

    def __init__(self, spec: StepSpec, backend: str, dtype: str, reduction: str, indices: bool,
                 setup: dict[str, Any]) -> None:
        super().__init__(spec, backend, dtype, reduction, indices)
        self.setup = setup
        self.bounds = np.asarray(setup["bounds"], dtype=np.int64)
        self.group: Group | None = None
        self.cur: Point | None = None
        self.prev: Point | None = None
        self.chunk: dict[str, Any] | None = None
        self.stop_requested = False
        self.in_collective = False
        self.collective_s = 0.0
        self.steps_run = 0
        self._layout: Any = None
        self._given: Any = None
        self._store: Rendezvous | None = None
        self._handed: list[str] = []

    # --- talking to the client ---------------------------------------------------------------------------

    def capabilities(self) -> dict[str, Any]:
        """What the collective can use here: ``nccl`` (None, or why not) and this worker's GPU (its UUID)."""
        gpu = self.be.is_gpu
        return {"gpu": gpu, "nccl": nccl_problem() if gpu else "the params are not on a GPU",
                "gpu_id": gpu_identity() if gpu else None}

    def describe(self) -> dict[str, Any]:
        """:meth:`Replica.describe`, and the collective's backend (``"gloo"``, ``"nccl"``) and group size."""
        group = self.group
        return {**super().describe(), "collective": None if group is None else group.backend,
                "world": None if group is None else group.world}

    def open_store(self) -> int:
        """Serve a new group's store (a ``TCPStore`` on a free port of 127.0.0.1); returns its port."""
        self._store = None
        self._store = Rendezvous(max(float(self.setup["timeout"]), JOIN_TIMEOUT))
        return self._store.port

    def join(self, port: int, generation: int, rank: int, world: int, backend: str) -> str | None:
        """Join process group ``generation`` as ``rank`` of ``world``; blocks until every member joined.
        Returns None, or why joining failed."""
        if self.group is not None:
            self.group.close()
        self.group = None
        try:
            self.group = Group(port, generation, rank, world, backend, float(self.setup["timeout"]))
        except CollectiveError as e:
            return str(e)
        return None

    def set_state(self, params: Any, state: Any) -> None:
        """Take the client's params and optimizer state (host arrays), to share with :meth:`share_state`."""
        xp, device = self.be.xp, self.be.device

        def put(a: Any) -> Any:
            return xp.asarray(a, device=device) if isinstance(a, np.ndarray) else a

        self._given = (tree_map(put, params), tree_map(put, state))

    def share_state(self, skeleton: Any) -> str | None:
        """Every member: the params and optimizer state that member 0 was given (:meth:`set_state`), by a
        broadcast, one buffer per dtype; ``skeleton``: their tree with :class:`ArraySpec` for the arrays.
        Returns None, or why the broadcast failed."""
        try:
            self._share(skeleton)
        except CollectiveError as e:
            return str(e)
        return None

    def _share(self, skeleton: Any) -> None:
        xp, device = self.be.xp, self.be.device
        assert self.group is not None
        if self.group.rank == 0:
            tree = self._given
        else:
            tree = tree_map(lambda a: xp.zeros(a.shape, dtype=self.be.dtype(a.dtype), device=device)
                            if isinstance(a, ArraySpec) else a, skeleton)
        leaves, treedef = tree_flatten(tree)
        by_dtype: dict[str, list[int]] = {}
        for i, a in enumerate(leaves):
            if adapter_of(a) is not None:
                by_dtype.setdefault(dtype_name(a.dtype), []).append(i)
        for idx in by_dtype.values():
            flat = self.group.broadcast(xp.concat([xp.reshape(leaves[i], (-1,)) for i in idx]), xp, device, 0)
            at = 0
            for i in idx:
                size = math.prod(leaves[i].shape)
                leaves[i] = xp.reshape(flat[at : at + size], leaves[i].shape)
                at += size
        params, state = tree_unflatten(treedef, leaves)
        self._given = None  # (the client sends them again to retry)
        self.cur, self.prev = Point(params, state, None, 0, 0, 0, 0.0, None), None
        p_leaves, p_def = tree_flatten(params)
        self._layout = (p_def, [tuple(a.shape) for a in p_leaves], [math.prod(a.shape) for a in p_leaves])

    def set_fields(self, fields: dict[str, Any]) -> None:
        """Change plain-number fields of the optimizer state (a learning-rate scale lowered between epochs)."""
        assert self.cur is not None
        self.cur, self.prev = replace(self.cur, state=self.cur.state._replace(**fields)), None

    def fetch(self) -> Any:
        """This replica's params and optimizer state, as host arrays (large ones in a ``_handoff`` parcel)."""
        assert self.cur is not None
        self.forget_parcels()
        parcel = pack((tree_map(_to_host, self.cur.params), tree_map(_to_host, self.cur.state)))
        if isinstance(parcel, Parcel):
            self._handed.append(parcel.path)
        return parcel

    def forget_parcels(self) -> None:
        """Remove the files of earlier parcels that no reader took (the client gone on the way)."""
        for path in self._handed:
            discard(path)
        self._handed = []

    def __del__(self) -> None:
        self.forget_parcels()

    def rollback(self, done: int) -> None:
        """Go back to the point after ``done`` steps (the last one every survivor completed)."""
        assert self.cur is not None
        if self.cur.done == done + 1 and self.prev is not None and self.prev.done == done:
            self.cur, self.prev = self.prev, None
        elif self.cur.done != done:
            raise RuntimeError(f"cannot go back from step {self.cur.done} to step {done}")

    async def request_stop(self) -> None:
        """Stop after the next step every member completes (runs on the worker's event loop, beside ``run``)."""
        self.stop_requested = True

    async def progress(self) -> tuple[int, bool]:
        """``(steps done, waiting in a collective)`` (on the event loop, while ``run`` works)."""
        return (-1 if self.cur is None else self.cur.done), self.in_collective

    def leave(self) -> None:
        if self.group is not None:
            self.group.close()
        self.group = None

    # --- the steps ---------------------------------------------------------------------------------------

    def run(self, pause_at: int | None, chunk: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run the chunk's steps (``chunk``: a new chunk; None: go on with the current one) until its end, the
        point after ``pause_at`` steps, a stop, a NaN/inf, or a failed collective. Returns a report."""
        assert self.cur is not None
        if chunk is not None:  # (a stop asked before this member began still counts: fit makes one member each)
            self.chunk = chunk
            self.cur = replace(self.cur, rng=chunk["rng"], e=0, step=chunk["start"], done=chunk["done"],
                               total=chunk["total"], correct=chunk["correct"], epochs=())
            self.prev = None
        c = self.chunk
        assert c is not None
        spe = -(-int(self.setup["n"]) // int(self.setup["batch_size"]))
        try:
            if self.cur.step == spe:  # resumed from a checkpoint saved after an epoch's last step
                self.cur = self._end_epoch(self.cur)
            while self.cur.e < len(c["orders"]):
                if pause_at is not None and self.cur.done >= pause_at:
                    return self._report("paused")
                p = self.cur
                out = self._step(p, self._batch(c["orders"][p.e], p.step))
                if isinstance(out, dict):
                    return out
                new, stop = out
                if new.step == spe:
                    new = self._end_epoch(new)
                self.prev, self.cur = p, new
                self.steps_run += 1
                if _after_step is not None:
                    _after_step(new.done, self)
                if new.step == 0 and self._drifted():
                    return self._report("drift")
                if stop:
                    return self._report("stopped")
        except CollectiveError as e:
            self.in_collective = False
            return self._report("comm_failed", error=str(e))
        except BaseException:
            self.leave()  # peers waiting on this member's sum fail at once, not after the timeout
            raise
        return self._report("done")

    def _end_epoch(self, p: Point) -> Point:
        """The point after epoch ``p.e`` ended: its total and count recorded, the next epoch at step 0."""
        return replace(p, e=p.e + 1, step=0, total=0.0, correct=0 if self.setup["counts_correct"] else None,
                       epochs=(*p.epochs, (p.total, p.correct)))

    def _report(self, status: str, **extra: Any) -> dict[str, Any]:
        p = self.cur
        assert p is not None
        return {"status": status, "done": p.done, "e": p.e, "step": p.step, "total": p.total,
                "correct": p.correct, "epochs": list(p.epochs), "rng": p.rng, "collective_s": self.collective_s,
                "steps_run": self.steps_run, "nonfinite": None, "error": None, **extra}

    def _batch(self, order: np.ndarray | None, step: int) -> np.ndarray:
        bs, n = int(self.setup["batch_size"]), int(self.setup["n"])
        if order is None:
            return np.arange(step * bs, min(n, (step + 1) * bs))
        return np.asarray(order[step * bs : (step + 1) * bs])

    def _step(self, p: Point, idx: np.ndarray) -> tuple[Point, bool] | dict[str, Any]:
        """One step on the global batch ``idx``: the new point and whether every member asked to stop, or the
        ``"nonfinite"`` report (the point stays before the step)."""
        xp, device = self.be.xp, self.be.device
        assert self.group is not None
        loss, grads, correct, end = self._local(p, idx)
        treedef, shapes, sizes = self._layout
        total_size = sum(sizes)
        stop = 1.0 if self.stop_requested else 0.0
        tail = [xp.reshape(xp.astype(loss, self.dtype), (1,)),
                xp.reshape(xp.astype(correct, self.dtype), (1,)), xp.asarray([stop], dtype=self.dtype, device=device)]
        inline = self.dtype in (xp.float32, xp.float64)  # counts exact to 2**24 rows at least
        parts = [xp.reshape(g, (-1,)) for g in grads] + (tail if inline else [])
        t0 = time.perf_counter()
        self.in_collective = True
        flat = self.group.all_reduce(xp.concat(parts), xp, device)
        if inline:
            stats = to_numpy(flat[total_size:])
        else:  # a narrow dtype: the loss and the counts are summed in the widest float there is
            wide = widest_float_dtype(flat)
            stats = to_numpy(self.group.all_reduce(xp.concat([xp.astype(t, wide) for t in tail]), xp, device))
        self.in_collective = False
        self.collective_s += time.perf_counter() - t0
        loss_sum, n_right, stops = float(stats[0]), float(stats[1]), float(stats[2])
        div = float(idx.shape[0]) if self.reduction != "sum" else 1.0
        g = flat[:total_size] / div if div != 1.0 else flat[:total_size]
        offsets = np.cumsum([0, *sizes])
        g_tree = tree_unflatten(treedef, [xp.reshape(g[int(o) : int(o) + s], shape)
                                          for o, s, shape in zip(offsets[:-1], sizes, shapes, strict=True)])
        params, state = update(self.spec.optimizer, p.params, g_tree, p.state)
        value = loss_sum / div
        if self.setup["check"]:
            scaled = loss_scale_of(p.state) is not None  # a step with non-finite grads is skipped, not an error
            check = finite_check(0.0 if scaled else xp.asarray(value, dtype=self.dtype, device=device), params,
                                 like=flat)
            if not math.isfinite(float(check)):
                return self._report("nonfinite", nonfinite=(p.e, p.step, value))
        new = Point(params, state, end, p.e, p.step + 1, p.done + 1, p.total + loss_sum,
                    None if p.correct is None else p.correct + int(round(n_right)), p.epochs)
        return new, stops > 0

    def _local(self, p: Point, idx: np.ndarray) -> tuple[Any, list[Any], Any, Any]:
        """This member's sums for the global batch ``idx``: shard by shard in shard order. A member with none
        of the batch's rows contributes zeros and still advances the dropout RNG as the others do (one
        row's forward pass: the RNG draws for the whole batch)."""
        xp, device = self.be.xp, self.be.device
        batch_rows = int(idx.shape[0])
        shard_of = np.searchsorted(self.bounds, idx, side="right") - 1
        loss: Any = xp.asarray(0.0, dtype=self.dtype, device=device)
        correct: Any = xp.asarray(0.0, dtype=self.dtype, device=device)
        grads: list[Any] | None = None
        end = p.rng
        scale = loss_scale_of(p.state)
        scale = None if scale is None else float(scale)
        for sid in sorted(self.shards):
            pos = np.flatnonzero(shard_of == sid)
            if pos.size == 0:
                continue
            rows = idx[pos] - self.bounds[sid]
            ls, g, c, end_s = self.shard_sums(p.params, sid, rows, pos, p.rng, batch_rows, int(self.setup["micro"]),
                                              scale)
            loss = loss + ls
            grads = g if grads is None else [a + b for a, b in zip(grads, g, strict=True)]
            if c is not None:
                correct = correct + xp.astype(c, self.dtype)
            end = end_s if end_s is not None else end
        if grads is None:
            grads = [xp.zeros(a.shape, dtype=a.dtype, device=device) for a in tree_leaves(p.params)]
            if p.rng is not None:
                X = next(iter(self.shards.values()))[0][:1, ...]
                rng = RowsRng(p.rng, batch_rows, np.zeros(1, dtype=np.int64))
                apply_model(self.spec.model, p.params, X, train=True, rng=rng)
                end = rng.bit_generator.state
        return loss, grads, correct, end

    def _drifted(self) -> bool:
        """All-gather a checksum of the params (three sums of their flat values); True when any differ."""
        assert self.cur is not None and self.group is not None
        xp = self.be.xp
        flat = xp.concat([xp.reshape(a, (-1,)) for a in tree_leaves(self.cur.params)])
        sums = np.array([float(xp.sum(flat)), float(xp.sum(flat * flat)), float(xp.sum(flat[::3]))])
        self.in_collective = True
        every = self.group.all_gather(sums)
        self.in_collective = False
        return not all(np.array_equal(every[0], row, equal_nan=True) for row in every[1:])
