"""Row shards of a fit's data on a Dask cluster's workers: what both exchanges of ``fit(client=)`` share.

The rows are cut into one contiguous shard per worker at the start. Each
worker holds a Dask Actor (a :class:`~._dask_worker.Replica` or one of its
subclasses) with its shards on the params' backend and device. When a worker
is lost its shards are read again by the least-loaded remaining workers (from
the host arrays, or from a Dask array's source); sums are kept per shard, so
where a shard lives changes no result.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

from .._check import dtype_name
from .._errors import ClusterError
from .._tree import tree_leaves
from ..backends import adapter_of, to_numpy
from ..layers.base import Params, has_state, takes_indices, trainable, uses_host_rng
from ._dask_data import DaskSource
from ._data import params_backend
from ._epoch import Loop
from ._source import MemorySource

__all__ = ["AllLost", "ShardedRunner", "call", "check_client", "is_lost", "live", "start", "worker_backend"]

_LIVE = ("running", "connecting", "newly-created")


class AllLost(Exception):
    """Every worker, or the client's connection to the scheduler, is gone (fit raises ``ClusterError``)."""


def live(client: Any) -> bool:
    """The client is connected (or connecting) to its scheduler."""
    return client.status in _LIVE


def is_lost(e: BaseException) -> bool:
    """An actor call failed because its worker is gone (not because the step raised)."""
    return isinstance(e, OSError) or (isinstance(e, RuntimeError) and "lost" in str(e).lower()) or \
        type(e).__name__ in ("CancelledError", "FutureCancelledError")


class _Failed:
    """A call that could not start: done, raising what starting it raised."""

    def __init__(self, err: BaseException) -> None:
        self.err = err

    def done(self) -> bool:
        return True

    def result(self, timeout: Any = None) -> Any:
        raise self.err


def start(actor: Any, method: str, *args: Any) -> Any:
    """Start ``actor.method(*args)``: its future (``done()``, ``result()``); one that raises what starting
    the call raised when it could not start (an actor whose worker is already known lost raises on attribute
    access)."""
    try:
        return getattr(actor, method)(*args)
    except Exception as e:
        return _Failed(e)


def call(actor: Any, method: str, *args: Any) -> Callable[[], Any]:
    """Start ``actor.method(*args)``; returns a function giving its result (raising what the call raised)."""
    return start(actor, method, *args).result  # type: ignore[no-any-return]


def check_client(client: Any) -> None:
    """``client`` is an open ``distributed.Client`` (TypeError/ValueError/ImportError otherwise)."""
    try:
        from distributed import Client
    except ImportError as e:
        raise ImportError(f"fit: client= needs distributed: pip install 'portable_nn[dask]' ({e}).") from None
    if not isinstance(client, Client):
        raise TypeError(f"fit: client must be a distributed.Client (or pnn.DataParallel), got {type(client).__name__}.")
    if not live(client):
        raise ValueError(
            f"fit: the client is {client.status}; pass an open distributed.Client (e.g. inside "
            "'with Client(cluster) as client:')."
        )


class ShardedRunner:
    """Shards and actors on the client's workers; subclasses run the steps (the hub, the all-reduce).

    ``actor_class`` is the worker side, called ``actor_class(spec, backend, dtype, reduction, indices,
    *self.actor_args())`` once the shards' bounds are known.
    """

    def __init__(self, client: Any, loop: Loop, micro: int, params: Params, actor_class: Any) -> None:
        check_client(client)
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
        self.backend = worker_backend(tree_leaves(params)[0])
        workers = self.workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
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
        extra = self.actor_args()
        self.futures = {
            w: client.submit(actor_class, spec, self.backend, dtype_name(self.dtype), loop.reduction,
                             takes_indices(spec.model), *extra, actor=True, workers=[w],
                             allow_other_workers=False, pure=False, key=f"pnn-replica-{tag}-{i}")
            for i, w in enumerate(workers)
        }
        self.actors: dict[str, Any] = {}
        self.owner: dict[int, str] = {}
        lost = []
        for w, f in self.futures.items():
            try:
                self.actors[w] = f.result()
            except Exception as e:
                if not is_lost(e):
                    raise
                lost.append(w)
        pending = {sid: workers[sid % len(workers)] for sid in range(n_shards)}
        try:
            self._place(pending, lost)
        except BaseException as e:
            self.close()  # free the actors and the shards already loaded
            if isinstance(e, AllLost):
                raise ClusterError(f"fit: {e} before training started; the error's .params are the ones given.",
                                   params=params, epoch=0, step=0, history=loop.history) from None
            raise

    def actor_args(self) -> tuple[Any, ...]:
        """More arguments for each actor (after ``self.bounds`` is set)."""
        return ()

    def chunk(self, remaining: int) -> int:
        """Epochs the next ``run`` covers."""
        return 1

    def _place(self, shards: dict[int, str], lost: list[str]) -> None:
        """Load each shard on its worker; shards of workers that fail are moved to the least-loaded others."""
        while True:
            for w in lost:
                self.actors.pop(w, None)
                self.futures.pop(w, None)
            if not self.actors:
                raise AllLost("every worker of the cluster was lost")
            shards = {sid: (w if w in self.actors else self._least_loaded()) for sid, w in shards.items()}
            calls = []
            for sid, w in sorted(shards.items()):
                lo, hi = int(self.bounds[sid]), int(self.bounds[sid + 1])
                calls.append((sid, w, call(self.actors[w], "add_shard", sid, *self._source(lo, hi))))
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
                    if not is_lost(e):
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

    def _warn_lost(self, lost: list[str], shards: dict[int, str], then: str = "recomputing the step") -> None:
        warnings.warn(
            f"fit: lost worker(s) {', '.join(sorted(set(lost)))}; moving shard(s) {sorted(shards)} to the "
            f"remaining {len(self.actors) - len(set(lost) & set(self.actors))} worker(s) and {then}.",
            RuntimeWarning, stacklevel=4,
        )

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
