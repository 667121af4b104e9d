"""Dask arrays as fit/predict/evaluate data: checked at entry, streamed block by block.

A Dask array (e.g. ``dask.array.from_zarr``) chunked along rows is read one
block at a time and moved to the params' backend and device with
:func:`as_data`; the next block is read in a background thread while the
current one is used. Nothing here imports dask at module import:
``import portable_nn`` never does.

Training (:class:`DaskSource`) reads the rows of each epoch's order (the same
order as for data in memory) a window at a time: a window is whole batches,
about a block's rows; its rows are taken from the blocks that hold them. With
the stored order, or ``fit(shuffle="blocks")`` (blocks in a new order, rows
shuffled within each), a window touches one or two blocks, so each block is
read about once per epoch and memory holds about two blocks. With
``shuffle=True`` (a permutation of all rows, the default: the batches equal
the in-memory run's) a window touches most blocks, so each block is read
about once per window: right for data that fits in memory, slow for data
far larger than memory, which should use ``shuffle="blocks"``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..layers.base import Array, Layer, Params, takes_indices
from ._data import (
    IDS_HINT,
    as_data,
    check_finite,
    check_index_range,
    check_one_row_batch,
    check_targets,
    params_backend,
    probe,
)
from ._precision import infer
from ._source import Batch, take_rows
from ._step import n_correct

__all__ = ["DaskData", "DaskSource", "as_dask_pair", "check_dask_data", "evaluate_blocks", "evaluate_dask", "is_dask",
           "predict_dask"]


def is_dask(*objs: Any) -> bool:
    """True when any of ``objs`` (or of a pair among them) is a Dask array; never imports dask."""
    da = sys.modules.get("dask.array")
    if da is None:
        return False
    for o in objs:
        if isinstance(o, (tuple, list)) and is_dask(*o):
            return True
        if isinstance(o, da.Array):
            return True
    return False


def as_dask_pair(where: str, names: tuple[str, str], X: Any, Y: Any) -> tuple[Any, Any]:
    """``X`` and ``Y`` as Dask arrays with the same row chunks, one chunk along every other axis.

    Host data (NumPy, lists) on one side is wrapped with the other side's row
    chunks; arrays of other libraries raise. Unknown chunk sizes raise.
    """
    import dask.array as da

    nx, ny = names
    if not isinstance(X, da.Array):
        X, Y, nx, ny = Y, X, ny, nx  # X is now the Dask one
        swapped = True
    else:
        swapped = False
    for name, A in ((nx, X), (ny, Y)):
        if isinstance(A, da.Array) and any(np.isnan(c) for c in A.chunks[0]):
            raise ValueError(
                f"{where}: {name} is a Dask array with unknown chunk sizes; call {name}.compute_chunk_sizes() "
                "(or build it from a store with known shape, e.g. dask.array.from_zarr) first."
            )
    if not isinstance(Y, da.Array):
        if not isinstance(Y, (np.ndarray, list, tuple)):
            raise TypeError(
                f"{where}: {nx} is a Dask array, so {ny} must be a Dask array or host data (NumPy), "
                f"got {type(Y).__name__}. Convert it with dask.array.from_array(pnn.to_numpy({ny}))."
            )
        Y = np.asarray(Y)
        if Y.ndim == 0 or Y.shape[0] != X.shape[0]:
            raise ValueError(f"{where}: {nx} has {X.shape[0]} rows but {ny} has shape {Y.shape}.")
        Y = da.from_array(Y, chunks=(X.chunks[0],) + tuple(-1 for _ in Y.shape[1:]))
    for name, A in ((nx, X), (ny, Y)):
        if A.ndim == 0:
            raise ValueError(f"{where}: {name} must have a batch axis, got a 0-d Dask array.")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"{where}: {nx} has {X.shape[0]} rows but {ny} has {Y.shape[0]}; they must have the same length."
        )
    X = _rows_only(X)
    Y = _rows_only(Y)
    if Y.chunks[0] != X.chunks[0]:
        Y = Y.rechunk({0: X.chunks[0]})
    return (Y, X) if swapped else (X, Y)


def _rows_only(A: Any) -> Any:
    """Chunked along rows only: every other axis is one chunk (a block is whole rows), and no block empty
    (Dask's own reductions fail on a 2-D array with an empty block, e.g. ``(5, 0, 6)`` rows of labels)."""
    if any(len(c) > 1 for c in A.chunks[1:]):
        A = A.rechunk({i: -1 for i in range(1, A.ndim)})
    rows = tuple(c for c in A.chunks[0] if c)
    if rows and len(rows) < len(A.chunks[0]):
        A = A.rechunk({0: rows})
    return A


class DaskData:
    """A checked Dask ``(X, Y)`` pair (Y may be None for predict) and where its blocks go."""

    def __init__(self, where: str, X: Any, Y: Any, xp: Any, device: Any, dtype: Any,
                 names: tuple[str, str] = ("X", "Y"), indices: bool = False) -> None:
        self.where, self.names, self.indices = where, names, indices
        self.X, self.Y = X, Y
        self.xp, self.device, self.dtype = xp, device, dtype
        self.sizes = [int(c) for c in X.chunks[0]]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.n = int(X.shape[0])
        self.counts = False  # integer labels of a (batch, classes) output (set by check_dask_data)
        self.n_classes: int | None = None
        self.X1: Array | None = None  # X's first row on the params' device (set by check_dask_data)
        # checks a block of integer ids X against what the model takes: (block, its first row) -> None
        self.check_ids: Callable[[Array, int], None] | None = None

    @property
    def n_blocks(self) -> int:
        return len(self.sizes)

    def load(self, i: int) -> tuple[Array, Array | None]:
        """Block ``i`` of X (and Y) on the params' backend, checked for NaN/inf."""
        import dask

        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        parts = (self.X.blocks[i],) if self.Y is None else (self.X.blocks[i], self.Y.blocks[i])
        host = dask.compute(*parts)
        out: list[Any] = []
        for name, A, labels_ok in zip(self.names, host, (False, True), strict=False):
            B = as_data(self.where, name, A, self.xp, self.device, self.dtype, labels_ok=labels_ok,
                        indices=self.indices and not labels_ok)
            if not labels_ok and self.check_ids is not None:
                try:
                    self.check_ids(B, lo)  # names the row in the whole data
                except ValueError as e:
                    raise ValueError(f"{e} (in block {i}, rows {lo}..{hi - 1} of {name}: Dask data is checked "
                                     "block by block as it is read)") from None
            try:
                check_finite(self.where, name, B, self.xp)
            except ValueError as e:
                raise ValueError(
                    f"{e} (in block {i}, rows {lo}..{hi - 1} of {name}: Dask data is checked block by block "
                    "as it is read; the row above counts from the block's start)"
                ) from None
            out.append(B)
        return out[0], (out[1] if len(out) > 1 else None)

    def stream(self, order: Sequence[int] | np.ndarray) -> Iterator[tuple[int, Array, Array | None]]:
        """Yield ``(i, X block, Y block)`` in ``order``, reading the next block in the background."""
        order = [int(i) for i in order]
        if not order:
            return
        with ThreadPoolExecutor(1, thread_name_prefix="pnn-prefetch") as pool:
            nxt = pool.submit(self.load, order[0])
            for k, i in enumerate(order):
                Xb, Yb = nxt.result()
                nxt = pool.submit(self.load, order[k + 1]) if k + 1 < len(order) else None  # type: ignore[assignment]
                yield i, Xb, Yb
                del Xb, Yb


def check_dask_data(
    where: str, model: Layer, params: Params, X: Any, Y: Any, loss: Any, names: tuple[str, str] = ("X", "Y"),
    n_classes: int | None = None, batch_size: int | None = None,
) -> tuple[DaskData, bool]:
    """Check a Dask ``(X, Y)`` before any work: kinds, dtypes, lengths, chunks, the model and loss on its
    first rows, integer labels' range (one pass over Y only) and, given fit's ``batch_size``, a 1-row batch
    (see :func:`check_one_row_batch`). Returns the data and whether accuracy counts."""
    xp, device, dtype = params_backend(params, where)
    X, Y = as_dask_pair(where, names, X, Y)
    nx, ny = names
    indices = takes_indices(model)
    if indices and np.dtype(X.dtype).kind not in "iu":
        raise TypeError(
            f"{where}: {nx} has dtype {X.dtype}, but the model takes integer indices (it starts with an "
            f"embedding). Pass integer ids, e.g. {nx}.astype('int64'), not floats."
        )
    if not indices and np.dtype(X.dtype).kind != "f":
        raise TypeError(
            f"{where}: {nx} has dtype {X.dtype}; floating data is needed. "
            f"Convert it explicitly, e.g. {nx}.astype('float32').{IDS_HINT if np.dtype(X.dtype).kind in 'iu' else ''}"
        )
    if np.dtype(Y.dtype).kind not in "fiu":
        raise TypeError(f"{where}: {ny} has dtype {Y.dtype}; float targets or integer labels are needed.")
    if X.shape[0] == 0:
        raise ValueError(f"{where}: {nx} is empty (0 rows).")
    data = DaskData(where, X, Y, xp, device, dtype, names, indices)
    Xk = as_data(where, nx, np.asarray(X[:1].compute()), xp, device, dtype, labels_ok=False, indices=indices)
    Yk = as_data(where, ny, np.asarray(Y[:1].compute()), xp, device, dtype, labels_ok=True)
    data.X1 = Xk
    if indices:  # each block's ids, as it is read (a jitted step cannot check them; see check_index_range)
        data.check_ids = lambda B, first: check_index_range(where, nx, model, params, B, xp, first)
    Yp = probe(where, model, params, _Shaped(Xk, X.shape), _Shaped(Yk, Y.shape), loss, data.n, names)
    counts = check_targets(where, ny, Yk, Yp, xp)
    check_one_row_batch(where, model, params, Xk[:1, ...], data.n, batch_size)
    if counts:
        import dask

        classes = int(Yp.shape[-1]) if n_classes is None else n_classes
        data.counts, data.n_classes = True, classes
        lo, hi = (int(v) for v in dask.compute(Y.min(), Y.max()))
        if lo < 0 or hi >= classes:
            raise ValueError(
                f"{where}: {ny}: labels must be in [0, {classes}) for {classes} classes, got values "
                f"in [{lo}, {hi}]. Check the number of output units or re-encode the labels."
            )
    return data, counts


class _Shaped:
    """The first row of a Dask array (for :func:`probe`), reporting the whole array's shape."""

    def __init__(self, head: Array, shape: tuple[int, ...]) -> None:
        self.head, self.shape, self.dtype = head, shape, head.dtype

    def __getitem__(self, key: Any) -> Array:
        return self.head[key]


class DaskSource:
    """A checked Dask ``(X, Y)`` as a fit's :class:`~._source.Source`: each epoch's order read a window at a
    time (see the module docstring); blocks are read in a background thread one ahead of use."""

    weighted = False

    def __init__(self, data: DaskData, counts: bool) -> None:
        self.data, self.counts_correct = data, counts
        self.n = data.n
        self.total_weight = float(data.n)
        self.n_labels = int(np.prod(data.Y.shape)) if counts else data.n
        self.like = data.X1
        self.block_sizes = list(data.sizes)
        self._block_of = np.repeat(np.arange(data.n_blocks), data.sizes)

    def batches(self, order: np.ndarray | None, batch_size: int, start: int = 0) -> Iterator[tuple[int, Batch]]:
        data, xp, device = self.data, self.data.xp, self.data.device
        order = np.arange(self.n) if order is None else np.asarray(order)
        per_window = max(1, -(-max(data.sizes) // batch_size))  # whole batches, about a block's rows
        windows = range(start // per_window * per_window, -(-self.n // batch_size), per_window)
        plan = []  # per window: its rows, and the blocks they come from
        for w in windows:
            rows = order[w * batch_size : (w + per_window) * batch_size]
            ids, first = np.unique(self._block_of[rows], return_index=True)
            plan.append((w, rows, ids[np.argsort(first)]))  # as they come: a window's first block is
            # the one the window before ended with
        blocks = self._read([int(b) for _, _, need in plan for b in need])
        for w, rows, need in plan:
            where = self._block_of[rows]
            parts: list[tuple[Array, Array]] = []
            pos = np.empty(rows.shape[0], dtype=np.int64)
            done = 0
            for b in need:
                Xb, Yb = next(blocks)
                sel = np.flatnonzero(where == b)
                local = rows[sel] - int(data.offsets[b])
                parts.append((take_rows(xp, Xb, local, device), take_rows(xp, Yb, local, device)))
                pos[sel] = np.arange(done, done + sel.shape[0])
                done += sel.shape[0]
            Xw = parts[0][0] if len(parts) == 1 else xp.concat([p[0] for p in parts], axis=0)
            Yw = parts[0][1] if len(parts) == 1 else xp.concat([p[1] for p in parts], axis=0)
            del parts
            for k in range(0, rows.shape[0], batch_size):
                step = w + k // batch_size
                if step >= start:
                    idx = pos[k : k + batch_size]
                    yield step, (take_rows(xp, Xw, idx, device), take_rows(xp, Yw, idx, device), None)

    def _read(self, sequence: list[int]) -> Iterator[tuple[Array, Array]]:
        """The blocks of ``sequence`` in turn. A block used again later stays in memory while the blocks so
        kept fit in :data:`CACHE_BYTES` (with ``shuffle=True`` on data that fit, each block is then read once
        per epoch); any other block is read anew when it comes again."""
        loads, keep = _plan_reads(sequence, [self._bytes(b) for b in range(self.data.n_blocks)], CACHE_BYTES)
        stream = self.data.stream(loads)
        cache: dict[int, tuple[Array, Array]] = {}
        held: tuple[int, tuple[Array, Array]] | None = None
        for i, b in enumerate(sequence):
            if held is not None and held[0] == b:
                arrays = held[1]
            elif b in cache:
                arrays = cache[b]
            else:
                _, Xb, Yb = next(stream)
                arrays = (Xb, Yb)  # type: ignore[assignment]
            if keep[i]:
                cache[b] = arrays
            elif b in cache and keep[i] is None:
                del cache[b]
            held = (b, arrays)
            yield arrays

    def _bytes(self, b: int) -> int:
        """At most how many bytes block ``b`` takes on the device (8 bytes an element)."""
        X, Y = self.data.X, self.data.Y
        return int(self.data.sizes[b]) * 8 * (int(np.prod(X.shape[1:])) + int(np.prod(Y.shape[1:])))


CACHE_BYTES = 256 * 2**20
"""Blocks a training epoch will read again are kept in memory up to this many bytes."""


def _plan_reads(sequence: list[int], sizes: list[int], budget: int) -> tuple[list[int], list[bool | None]]:
    """Which blocks to read, in order, for the block ``sequence``, and per position whether to keep the block
    after it (True), drop it from the kept ones (None: not used again), or neither (False)."""
    last_use = {b: i for i, b in enumerate(sequence)}
    kept: set[int] = set()
    used = 0
    loads: list[int] = []
    keep: list[bool | None] = []
    for i, b in enumerate(sequence):
        if b not in kept and not (i > 0 and sequence[i - 1] == b):
            loads.append(b)
        again = last_use[b] > i
        if again and b not in kept and not (i + 1 < len(sequence) and sequence[i + 1] == b) and used + sizes[b] <= budget:
            kept.add(b)
            used += sizes[b]
            keep.append(True)
        elif not again and b in kept:
            kept.discard(b)
            used -= sizes[b]
            keep.append(None)
        else:
            keep.append(False)
    return loads, keep


def _inference_batches(data: DaskData, batch_size: int) -> Iterator[tuple[Array, Array | None]]:
    """Blocks in order, each cut into batches of at most ``batch_size`` rows (inference is row by row)."""
    for _, Xb, Yb in data.stream(range(data.n_blocks)):
        for lo in range(0, Xb.shape[0], batch_size):
            hi = min(lo + batch_size, Xb.shape[0])
            yield Xb[lo:hi, ...], (None if Yb is None else Yb[lo:hi, ...])


def evaluate_dask(
    where: str, model: Layer, params: Params, X: Any, Y: Any, loss: Any, reduction: str, batch_size: int,
    precision: str | None = None,
) -> tuple[float, float | None]:
    """:func:`evaluate` over Dask data, streamed block by block (checked at entry as for fit)."""
    data, counts = check_dask_data(where, model, params, X, Y, loss)
    return evaluate_blocks(model, params, data, loss, reduction, batch_size, counts, precision)


def evaluate_blocks(
    model: Layer, params: Params, data: DaskData, loss: Any, reduction: str, batch_size: int, counts: bool,
    precision: str | None = None,
) -> tuple[float, float | None]:
    """The loss (and accuracy, where ``counts``) of checked Dask data, block by block."""
    total, correct = 0.0, 0
    for Xb, Yb in _inference_batches(data, batch_size):
        Yp = infer(model, params, Xb, precision)
        value = float(loss(Yp, Yb)[0])
        total += value if reduction == "sum" else value * Xb.shape[0]
        c = n_correct(data.xp, Yp, Yb)
        correct += 0 if c is None else int(c)
    n = data.n
    return (total if reduction == "sum" else total / n), (correct / int(np.prod(data.Y.shape)) if counts else None)


def predict_dask(model: Layer, params: Params, X: Any, batch_size: int, precision: str | None = None) -> Array:
    """:func:`predict` over a Dask array, streamed block by block; the outputs are concatenated."""
    import dask.array as da

    xp, device, dtype = params_backend(params, "predict")
    indices = takes_indices(model)
    kind = np.dtype(X.dtype).kind
    if not (kind in "iu" if indices else kind == "f"):
        want = "integer indices (the model starts with an embedding)" if indices else "floating data"
        raise TypeError(f"predict: X has dtype {X.dtype}; {want} is needed. Convert it, e.g. X.astype("
                        f"'{'int64' if indices else 'float32'}')."
                        f"{IDS_HINT if not indices and kind in 'iu' else ''}")
    if X.ndim == 0 or X.shape[0] == 0:
        raise ValueError(f"predict: X must have rows, got a Dask array of shape {X.shape}.")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("predict: X is a Dask array with unknown chunk sizes; call X.compute_chunk_sizes() first.")
    assert isinstance(X, da.Array)
    data = DaskData("predict", _rows_only(X), None, xp, device, dtype, indices=indices)
    outs = [infer(model, params, Xb, precision) for Xb, _ in _inference_batches(data, batch_size)]
    return outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)
