"""``fit(client=...)``: a ``distributed.Client``, or :class:`DataParallel` to choose how gradients are exchanged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._check import real_number
from ..layers.base import Params
from ._epoch import Loop
from ._settings import Settings

__all__ = ["DataParallel", "cluster_runner"]

EXCHANGES = ("allreduce", "hub")


@dataclass(frozen=True)
class DataParallel:
    """Data-parallel training on a Dask cluster: pass it as ``fit(..., client=pnn.DataParallel(client, ...))``.

    ``fit(..., client=client)`` is ``DataParallel(client)``: the defaults.

    Args:
        client: a ``distributed.Client``; its workers each hold a row shard and a params replica.
        exchange: how the gradients are summed each step:

            - ``"allreduce"`` (default): among the workers, by a ``torch.distributed``
              all-reduce (gloo on the CPU, NCCL between GPUs), in long-running tasks
              that run whole epochs; the client sends nothing per step. Needs
              ``torch`` (``pip install 'portable_nn[dask]'``) and the workers on the
              client's machine (the process group listens on 127.0.0.1 only).
            - ``"hub"``: through the client, which sends the params to every worker,
              adds their gradients and applies the optimizer each step (its work and
              traffic per step grow with the model and the workers); for comparison,
              and for workers on other machines.
        timeout: seconds a worker may take to join a step's all-reduce before
            the others give up on it; a worker that does not answer within
            another ``timeout`` is treated as lost (its shards move to the
            others). Default 60: set it above the longest step. (``"hub"``: unused.)

    Raises:
        ValueError: ``exchange`` is neither ``"allreduce"`` nor ``"hub"``; ``timeout``
            is not a finite number > 0.

    ``fit`` raises :class:`~portable_nn.ClusterError` when every worker is lost
    (see the guide's "Dask and scale-out" page, ``docs/guide/dask.md``, for a
    complete script, faults and measurements). In a script, start the cluster
    under ``if __name__ == "__main__":``, as its worker processes import the
    script again::

        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
            params, history = pnn.fit(model, params, X, Y, loss=..., optimizer=...,
                                      client=pnn.DataParallel(client, exchange="hub"))
    """

    client: Any
    exchange: str = "allreduce"
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.exchange not in EXCHANGES:
            raise ValueError(
                f"DataParallel: exchange must be 'allreduce' (among the workers) or 'hub' (through the client), "
                f"got {self.exchange!r}."
            )
        object.__setattr__(self, "timeout", real_number("DataParallel", "timeout", self.timeout, lo=0.0, lo_open=True))


def cluster_runner(client: Any, loop: Loop, s: Settings, params: Params, one_epoch: bool) -> Any:
    """The runner for ``fit(client=client)``: the all-reduce, or the hub."""
    dp = client if isinstance(client, DataParallel) else DataParallel(client)
    if dp.exchange == "hub":
        from ._cluster import ClusterRunner

        return ClusterRunner(dp.client, loop, s.accumulate, params)
    from ._allreduce import AllReduceRunner

    return AllReduceRunner(dp.client, loop, s.accumulate, params, one_epoch=one_epoch, every=s.checkpoint_every,
                           timeout=dp.timeout)
