"""Helpers of the Dask tests (tests/test_dask.py, tests/test_allreduce.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

import portable_nn as pnn


def loopback_cluster(n: int) -> Any:
    """n one-thread worker processes on loopback; no dashboard (its HTTP routes on a free loopback port)."""
    import distributed

    return distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})


def max_rel(a: Any, b: Any) -> float:
    """Largest ``max|a - b| / max|a|`` over the leaves."""
    worst = 0.0
    for x, y in zip(pnn.tree_leaves(a), pnn.tree_leaves(b), strict=True):
        x, y = pnn.to_numpy(x), pnn.to_numpy(y)
        worst = max(worst, float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(x))), 1e-300)))
    return worst


def same(a: Any, b: Any) -> bool:
    """Bit for bit equal leaves."""
    return all(np.array_equal(pnn.to_numpy(x), pnn.to_numpy(y))
               for x, y in zip(pnn.tree_leaves(a), pnn.tree_leaves(b), strict=True))


def set_worker_hook(client: Any, hook: Any, workers: list[str] | None = None) -> None:
    """Install ``hook(steps_done, member)`` as the all-reduce members' after-step hook in worker processes
    (all, or ``workers``); ``None`` removes it."""

    def install(hook: Any = hook) -> None:
        from portable_nn.training import _allreduce_worker

        _allreduce_worker._after_step = hook

    client.run(install, workers=workers)
