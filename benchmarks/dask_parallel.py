"""Case h: data-parallel fit on a 2-worker Dask LocalCluster against one process on the same cores.

784-512-512-10 ReLU MLP with biases, global batch 4096, float32, softmax cross-entropy, SGD(lr=0.01).
Candidates, timed alternately in this one process (one epoch each, median over repeats):

1. ``pnn.fit`` in this process (BLAS uses every core it is allowed);
2. ``pnn.fit(..., client=client)`` on a ``LocalCluster(n_workers=2, threads_per_worker=1)`` on
   loopback: each worker process holds half the rows and a params replica, one BLAS thread each.

Also measured: the exchange time per step, from the same cluster fit with 2-row batches (the compute is
then negligible, so a step is the params sent to each worker, the gradients sent back, the actor round
trip and the optimizer on the client), and the bytes moved per step and worker (2 x params). Needs
``pip install 'portable_nn[dask]'``; the case is skipped without it. Opt-in: ``--cases h``.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from portable_nn import Linear, ReLU, Sequential, fit, tree_leaves
from portable_nn.losses import softmax_cross_entropy
from portable_nn.optim import SGD

from ._common import Config
from ._result import CaseResult, Column

__all__ = ["KEY", "SIZES", "run"]

KEY = "h"
SIZES = {"full": (512, 4096, 16), "quick": (512, 4096, 8), "tiny": (32, 256, 4)}  # hidden, batch, steps/epoch
REPEATS = {"full": 5, "quick": 3, "tiny": 1}
EXCHANGE_STEPS = {"full": 40, "quick": 20, "tiny": 5}
ONE, CLUSTER = "portable_nn fit, one process", "portable_nn fit, 2 Dask workers (client=)"


def _epoch(model: Any, params: Any, X: Any, Y: Any, batch: int, client: Any = None) -> tuple[float, Any]:
    start = time.perf_counter()
    out, _ = fit(model, params, X, Y, loss=softmax_cross_entropy, optimizer=SGD(0.01), epochs=1,
                 batch_size=batch, shuffle=True, seed=0, progress=False, client=client)
    return time.perf_counter() - start, out


def run(config: Config) -> CaseResult:
    """Rows per second of one process and of 2 Dask workers, and the exchange time per step."""
    hidden, batch, steps = SIZES[config.profile]
    result = CaseResult(KEY, f"data-parallel fit on Dask, MLP 784-{hidden}-{hidden}-10, global batch {batch}, float32")
    try:
        import distributed
    except ImportError as e:
        result.skipped[CLUSTER] = f"distributed is not installed ({e}); pip install 'portable_nn[dask]'"
        return result
    n = batch * steps
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 784), dtype=np.float32)
    Y = rng.integers(0, 10, size=n)
    model = Sequential(Linear(784, hidden), ReLU(), Linear(hidden, hidden), ReLU(), Linear(hidden, 10))
    params = model.init(seed=0, dtype="float32")
    param_bytes = sum(int(np.prod(p.shape)) * 4 for p in tree_leaves(params))
    repeats = REPEATS[config.profile] if not config.explicit_repeats else config.repeats
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None,
                                  scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster, \
            distributed.Client(cluster) as client:
        for c in (None, client):  # warm up: imports, actors' first steps, BLAS buffers
            _epoch(model, params, X[: 2 * batch], Y[: 2 * batch], batch, c)
        times: dict[str, list[float]] = {ONE: [], CLUSTER: []}
        outs = {}
        for _ in range(repeats):
            for name, c in ((ONE, None), (CLUSTER, client)):
                t, outs[name] = _epoch(model, params, X, Y, batch, c)
                times[name].append(t)
        k = EXCHANGE_STEPS[config.profile]
        t_small_cluster = min(_epoch(model, params, X[: 2 * k], Y[: 2 * k], 2, client)[0] for _ in range(2))
        t_small_one = min(_epoch(model, params, X[: 2 * k], Y[: 2 * k], 2)[0] for _ in range(2))
    exchange = max(t_small_cluster - t_small_one, 0.0) / k
    med = {name: statistics.median(ts) for name, ts in times.items()}
    dev = max(
        float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-30))
        for a, b in zip(tree_leaves(outs[ONE]), tree_leaves(outs[CLUSTER]), strict=True)
    )
    for name in (ONE, CLUSTER):
        result.rows.append({
            "name": name, "median_s": med[name], "step_s": med[name] / steps, "rows_per_s": n / med[name],
            "ratio": med[ONE] / med[name], "exchange_s": exchange if name == CLUSTER else None,
            "mib": 2 * param_bytes / 2**20 if name == CLUSTER else None,
        })
    result.columns = [
        Column("candidate", "name"),
        Column("median/epoch", "median_s", "time"),
        Column("per step", "step_s", "time"),
        Column("rows/s", "rows_per_s", "int"),
        Column("throughput vs one process", "ratio", "ratio"),
        Column("exchange/step", "exchange_s", "time"),
        Column("MiB/step/worker", "mib", "float"),
    ]
    ratio = med[ONE] / med[CLUSTER]
    result.notes += [
        f"throughput ratio (2 Dask workers / one process): {ratio:.3f}; exchange {exchange * 1e3:.2f} ms/step "
        f"moving {2 * param_bytes / 2**20:.2f} MiB per worker and step (params out, gradients back)",
        f"params after one epoch: max relative difference {dev:.2e} (float32; float64 parity is a test: <= 1e-12)",
        "one process uses every BLAS thread it is allowed; each worker has one thread (distributed sets "
        "OMP/OPENBLAS/MKL_NUM_THREADS=1 in workers): both sides use the same cores",
    ]
    result.settings = {
        "hidden": hidden, "batch": batch, "steps_per_epoch": steps, "rows": n,
        "repeats": repeats, "exchange_steps": k, "param_bytes": param_bytes, "workers": 2,
        "throughput_ratio": ratio, "exchange_s_per_step": exchange, "max_rel_dev": dev,
    }
    return result
