"""Case h: data-parallel fit on a 2-worker Dask cluster, both gradient exchanges, against one process.

784-512-512-10 ReLU MLP with biases, global batch 4096, float32, softmax cross-entropy, SGD(lr=0.01).
Candidates, timed alternately in this one process (one epoch each, median over repeats):

1. ``pnn.fit`` in this process (BLAS uses every core it is allowed);
2. the hub: ``pnn.fit(..., client=pnn.DataParallel(client, exchange="hub"))``: each step the client sends
   the params to every worker, receives each worker's gradient sums, adds them and applies the optimizer;
3. the all-reduce: ``pnn.fit(..., client=client)``: the workers run the epoch themselves and sum their
   gradients with a ``torch.distributed`` all-reduce (gloo on loopback); the client sends nothing per step.

The cluster (``LocalCluster(n_workers=2, threads_per_worker=1)`` on 127.0.0.1) runs in a child process, so
that this process is the client alone. Also measured, for each exchange:

- the exchange per step, measured directly with 2-row steps (compute about 0): for the all-reduce, the
  time a worker spends inside the collective (also reported with the full batches, which adds waiting
  for the slower worker); for the hub, the client's round trip (params out, gradient sums back);
- a 2-row step's time minus one process's (the whole overhead of the exchange: moves, calls, the
  optimizer's place), from the difference of a 3k-step and a k-step fit so that a fit's set-up cancels;
- the client's CPU per step: ``time.process_time()`` of this process around a fit, over its steps.

Needs ``pip install 'portable_nn[dask]'`` (distributed and torch); the case is skipped without it. Opt-in:
``--cases h``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from portable_nn import DataParallel, Linear, ReLU, Sequential, fit, tree_leaves
from portable_nn.losses import softmax_cross_entropy
from portable_nn.optim import SGD

from ._common import Config
from ._result import CaseResult, Column

__all__ = ["KEY", "SIZES", "run"]

KEY = "h"
SIZES = {"full": (512, 4096, 16), "quick": (512, 4096, 8), "tiny": (32, 256, 4)}  # hidden, batch, steps/epoch
REPEATS = {"full": 5, "quick": 3, "tiny": 1}
EXCHANGE_STEPS = {"full": 40, "quick": 20, "tiny": 5}
ONE = "portable_nn fit, one process"
HUB = "2 Dask workers, hub (through the client)"
ALLREDUCE = "2 Dask workers, all-reduce (gloo)"

_SERVE = r"""
import sys
from distributed import LocalCluster

cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                       dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
print(cluster.scheduler_address, flush=True)
sys.stdin.read()  # until the bench closes this pipe
cluster.close()
"""


@contextmanager
def _cluster() -> Iterator[Any]:
    """A client of a 2-worker loopback cluster whose scheduler and nannies run in a child process."""
    import distributed

    proc = subprocess.Popen([sys.executable, "-c", _SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        if not address:
            raise RuntimeError("the cluster's process ended before printing its address")
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            yield client
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _epoch(model: Any, params: Any, X: Any, Y: Any, batch: int, client: Any = None) -> tuple[float, float, Any]:
    """One epoch: wall seconds, this process's CPU seconds, the params."""
    start, cpu = time.perf_counter(), time.process_time()
    out, _ = fit(model, params, X, Y, loss=softmax_cross_entropy, optimizer=SGD(0.01), epochs=1,
                 batch_size=batch, shuffle=True, seed=0, progress=False, client=client)
    return time.perf_counter() - start, time.process_time() - cpu, out


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.2f} ms"


def _max_rel(a: Any, b: Any) -> float:
    return max(float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(x))), 1e-30))
               for x, y in zip(tree_leaves(a), tree_leaves(b), strict=True))


def run(config: Config) -> CaseResult:
    """Rows per second, exchange per step and client CPU per step of one process and both exchanges."""
    hidden, batch, steps = SIZES[config.profile]
    result = CaseResult(KEY, f"data-parallel fit on Dask, MLP 784-{hidden}-{hidden}-10, global batch {batch}, float32")
    try:
        import distributed  # noqa: F401
        import torch.distributed  # noqa: F401
    except ImportError as e:
        result.skipped[HUB] = result.skipped[ALLREDUCE] = f"{e}; pip install 'portable_nn[dask]'"
        return result
    from portable_nn.training import _allreduce
    from portable_nn.training import _cluster as hub_runner

    n = batch * steps
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 784), dtype=np.float32)
    Y = rng.integers(0, 10, size=n)
    model = Sequential(Linear(784, hidden), ReLU(), Linear(hidden, hidden), ReLU(), Linear(hidden, 10))
    params = model.init(seed=0, dtype="float32")
    param_bytes = sum(int(np.prod(p.shape)) * 4 for p in tree_leaves(params))
    repeats = REPEATS[config.profile] if not config.explicit_repeats else config.repeats
    inside: list[float] = []  # the all-reduce members' seconds in the collective per step, per fit
    _allreduce._after_chunk = lambda r: inside.append(r.collective_s / max(r.steps_run, 1))
    hub_calls: list[float] = []  # the hub client's seconds per exchange (params out, gradient sums back)
    real_exchange = hub_runner.ClusterRunner._exchange

    def timed_exchange(self: Any, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return real_exchange(self, *args)
        finally:
            hub_calls.append(time.perf_counter() - start)

    hub_runner.ClusterRunner._exchange = timed_exchange  # type: ignore[method-assign,assignment]
    try:
        with _cluster() as client:
            ways = {ONE: None, HUB: DataParallel(client, exchange="hub"), ALLREDUCE: DataParallel(client)}
            for c in ways.values():  # warm up: imports, actors' first steps, BLAS buffers
                _epoch(model, params, X[: 2 * batch], Y[: 2 * batch], batch, c)
            times: dict[str, list[float]] = {name: [] for name in ways}
            cpus: dict[str, list[float]] = {name: [] for name in ways}
            outs = {}
            inside.clear()
            for _ in range(repeats):
                for name, c in ways.items():
                    t, t_cpu, outs[name] = _epoch(model, params, X, Y, batch, c)
                    times[name].append(t)
                    cpus[name].append(t_cpu / steps)
            waiting = statistics.median(inside) if inside else None
            k = EXCHANGE_STEPS[config.profile]
            inside.clear()
            hub_calls.clear()
            short = {name: min(_epoch(model, params, X[: 2 * k], Y[: 2 * k], 2, c)[0] for _ in range(2))
                     for name, c in ways.items()}
            long = {name: min(_epoch(model, params, X[: 6 * k], Y[: 6 * k], 2, c)[0] for _ in range(2))
                    for name, c in ways.items()}
            collective = min(inside) if inside else None
            hub_round_trip = statistics.median(hub_calls) if hub_calls else None
    finally:
        _allreduce._after_chunk = None
        hub_runner.ClusterRunner._exchange = real_exchange  # type: ignore[method-assign]
    per_step = {name: (long[name] - short[name]) / (2 * k) for name in ways}  # a fit's set-up cancels out
    overhead = {name: per_step[name] - per_step[ONE] for name in (HUB, ALLREDUCE)}
    exchange = {HUB: hub_round_trip, ALLREDUCE: collective}
    med = {name: statistics.median(ts) for name, ts in times.items()}
    cpu = {name: statistics.median(cs) for name, cs in cpus.items()}
    dev = {name: _max_rel(outs[ONE], outs[name]) for name in (HUB, ALLREDUCE)}
    moved = {HUB: 2 * param_bytes, ALLREDUCE: param_bytes}  # per worker and step; ring: 2 (N-1)/N x params
    for name in ways:
        result.rows.append({
            "name": name, "median_s": med[name], "step_s": med[name] / steps, "rows_per_s": n / med[name],
            "ratio": med[ONE] / med[name], "exchange_s": exchange.get(name), "overhead_s": overhead.get(name),
            "client_cpu_s": cpu[name],
            "mib": moved[name] / 2**20 if name in moved else None,
        })
    result.columns = [
        Column("candidate", "name"),
        Column("median/epoch", "median_s", "time"),
        Column("per step", "step_s", "time"),
        Column("rows/s", "rows_per_s", "int"),
        Column("vs one process", "ratio", "ratio"),
        Column("exchange/step", "exchange_s", "time"),
        Column("step - one process's", "overhead_s", "time"),
        Column("client CPU/step", "client_cpu_s", "time"),
        Column("MiB/step/worker", "mib", "float"),
    ]
    result.notes += [
        f"throughput ratio (all-reduce / one process): {med[ONE] / med[ALLREDUCE]:.3f}, (hub / one process): "
        f"{med[ONE] / med[HUB]:.3f}",
        "exchange/step, measured directly with 2-row steps (compute about 0): all-reduce " +
        _ms(collective) + " inside the gloo all-reduce of each worker's " + f"{param_bytes / 2**20:.2f} MiB "
        "gradient buffer (loopback; " + _ms(waiting) + " with the full batches, which adds waiting for the "
        "slower worker's compute); hub " + _ms(hub_round_trip) + " in the client's round trip (params to "
        "each worker, each worker's gradient sums back); the all-reduce's client sends nothing per step",
        "step - one process's: a 2-row step's time minus one process's, from the difference of a "
        f"{3 * k}-step and a {k}-step fit (set-up cancels out; noisy on a busy machine): all-reduce "
        f"{_ms(overhead[ALLREDUCE])}, hub {_ms(overhead[HUB])}",
        f"client CPU per step: all-reduce {cpu[ALLREDUCE] * 1e3:.3f} ms, hub {cpu[HUB] * 1e3:.3f} ms "
        f"(one process, which does the whole step: {cpu[ONE] * 1e3:.1f} ms)",
        f"params after one epoch: max relative difference hub {dev[HUB]:.2e}, all-reduce {dev[ALLREDUCE]:.2e} "
        "(float32; the float64 parity, <= 1e-12, is a test)",
        "one process uses every BLAS thread it is allowed; each worker has one thread (distributed sets "
        "OMP/OPENBLAS/MKL_NUM_THREADS=1 in workers): both sides use the same cores",
    ]
    result.settings = {
        "hidden": hidden, "batch": batch, "steps_per_epoch": steps, "rows": n,
        "repeats": repeats, "exchange_steps": k, "param_bytes": param_bytes, "workers": 2,
        "throughput_ratio": med[ONE] / med[ALLREDUCE], "hub_throughput_ratio": med[ONE] / med[HUB],
        "exchange_s_per_step": collective, "hub_exchange_s_per_step": hub_round_trip,
        "overhead_s_per_step": overhead[ALLREDUCE], "hub_overhead_s_per_step": overhead[HUB],
        "collective_s_per_step": collective, "collective_wait_s_per_step": waiting,
        "client_cpu_s_per_step": cpu[ALLREDUCE],
        "hub_client_cpu_s_per_step": cpu[HUB], "max_rel_dev": max(dev.values()),
    }
    return result
