"""Data-parallel fit(client=) on a loopback Dask cluster, on GPU params, against the one-process fit.

    python scripts/dask_gpu_check.py                      # --backend cupy: what scripts/gpu_check.sh runs
    python scripts/dask_gpu_check.py --backend numpy      # the same check on the CPU
    python scripts/dask_gpu_check.py --backend torch:cuda --json out.json

Starts ``dask_cuda.LocalCUDACluster`` (one worker per GPU, each seeing its own GPU as device 0) when
dask-cuda is importable, else ``distributed.LocalCluster`` with ``--workers`` processes on 127.0.0.1.
Trains an MLP (with dropout) in float64 from the same params and seed twice: in this process, and
with ``pnn.fit(..., client=client)`` on the workers, whose replicas hold their row shards on the params'
backend. Prints, and writes with ``--json``:

- parity: the largest relative difference of the params (leaf-wise ``max|a - b| / max|a|``); it must
  be <= 1e-12 (float64; measured ~1e-15);
- what the workers hold: each replica's backend, device and the array type of its shards (asked from
  the running actors between two steps), e.g. ``cupy.ndarray`` on ``cuda:0``; every shard must be an
  array of the params' library;
- rows/s of the one-process fit and of the cluster fit, and the exchange time per step (the cluster's
  step time with 2-row batches, compute about 0, minus one process's);
- on CuPy, whether NCCL is available on each worker (``cupy.cuda.nccl``; the all-reduce through
  ``cupyx.distributed`` is not implemented: gradients travel through the client as host arrays).

Exit status: 0 when parity holds and the workers hold the params' arrays; 1 when either fails or the
check raised; 124 when it ran past ``--timeout`` seconds. The cluster is closed in every case.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from typing import Any

import numpy as np

import portable_nn as pnn
from portable_nn.tools.arguments import backend_arg, positive_int
from portable_nn.training import _cluster as cluster_runner

TOLERANCE = 1e-12


class Timeout(Exception):
    pass


def max_rel(a: Any, b: Any) -> float:
    """Largest ``max|a - b| / max|a|`` over the leaves (on the host)."""
    worst = 0.0
    for x, y in zip(pnn.tree_leaves(a), pnn.tree_leaves(b), strict=True):
        x, y = pnn.to_numpy(x), pnn.to_numpy(y)
        worst = max(worst, float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(x))), 1e-300)))
    return worst


def actor_keys(dask_worker: Any = None) -> list[str]:
    """Run on each worker: the keys of the actors it holds (those of an earlier fit may linger a while)."""
    return [str(key) for key in dask_worker.state.actors]


def describe_worker(dask_worker: Any = None, nccl: bool = False, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Run on each worker (``client.run``): the fit's replicas (Dask actors, except the keys in ``exclude``)
    there, and the worker's GPU."""
    out: dict[str, Any] = {"pid": os.getpid(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                           "replicas": []}
    for key, obj in list(dask_worker.state.actors.items()):
        if str(key).startswith("pnn-replica-") and str(key) not in exclude and hasattr(obj, "describe"):
            out["replicas"].append({"key": str(key), **obj.describe()})
    if nccl:
        try:
            from cupy.cuda import nccl as nccl_module

            out["nccl"] = bool(getattr(nccl_module, "available", False))
        except Exception as e:  # noqa: BLE001 - a probe: report what is there
            out["nccl"] = f"unavailable ({type(e).__name__}: {e})"
    return out


def start_cluster(kind: str, workers: int) -> tuple[Any, str]:
    """A loopback cluster: dask-cuda's LocalCUDACluster if wanted and importable, else a LocalCluster."""
    if kind in ("auto", "cuda"):
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as e:
            if kind == "cuda":
                raise
            print(f"dask_cuda is not importable ({e}); using distributed.LocalCluster({workers} workers)")
        else:
            try:
                cluster = LocalCUDACluster(protocol="tcp", host="127.0.0.1", threads_per_worker=1,
                                           dashboard_address=None)
                return cluster, "dask_cuda.LocalCUDACluster"
            except Exception as e:  # noqa: BLE001 - e.g. no pynvml: the plain cluster still checks the recipe
                if kind == "cuda":
                    raise
                print(f"LocalCUDACluster failed ({type(e).__name__}: {e}); using distributed.LocalCluster"
                      f"({workers} workers)")
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, host="127.0.0.1")
    return cluster, "distributed.LocalCluster"


def run(args: argparse.Namespace, report: dict[str, Any]) -> int:
    from distributed import Client

    be = pnn.get_backend(args.backend)
    report.update(backend=args.backend, device=be.describe_device(), dtype="float64", rows=args.rows,
                  features=args.features, hidden=args.hidden, batch=args.batch, epochs=args.epochs,
                  tolerance=TOLERANCE)
    print(f"backend {args.backend}: {be!r} ({be.describe_device()})")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, args.features))
    Y = (X[:, :8].sum(axis=1) > 0).astype(np.int64) + 2 * (X[:, 8] > 1)  # 4 classes from the inputs
    model = pnn.Sequential(pnn.Linear(args.features, args.hidden), pnn.ReLU(), pnn.Dropout(0.1),
                           pnn.Linear(args.hidden, 4))
    params = model.init(seed=0, backend=be, dtype="float64")
    kw: dict[str, Any] = dict(loss=pnn.losses.softmax_cross_entropy, optimizer=pnn.optim.Adam(1e-3),
                              epochs=args.epochs, batch_size=args.batch, seed=1, progress=False)
    Xd, Yd = be.asarray(X), be.asarray(Y)

    def one_process(Xa: Any, Ya: Any, **extra: Any) -> tuple[float, Any]:
        start = time.perf_counter()
        out, hist = pnn.fit(model, params, Xa, Ya, **{**kw, **extra})
        be.synchronize(*pnn.tree_leaves(out))
        return time.perf_counter() - start, (out, hist)

    one_process(Xd[: 2 * args.batch, ...], Yd[: 2 * args.batch, ...], epochs=1)  # warm up
    t_one, (one, hist_one) = one_process(Xd, Yd)
    rows = args.rows * args.epochs

    cluster, kind = start_cluster(args.cluster, args.workers)
    try:
        with Client(cluster) as client:
            info = client.scheduler_info(n_workers=-1)["workers"]
            report.update(cluster=kind, n_workers=len(info))
            print(f"cluster: {kind} with {len(info)} worker(s) on {client.scheduler.address}")
            t = time.perf_counter()
            pnn.fit(model, params, X[: 2 * args.batch], Y[: 2 * args.batch], client=client, **{**kw, "epochs": 1})
            print(f"warm-up fit on the cluster: {time.perf_counter() - t:.1f}s")

            seen: dict[str, Any] = {}
            earlier = frozenset(k for keys in client.run(actor_keys).values() for k in keys)

            def after_step(done: int) -> None:  # between the first two steps: the actors hold their shards
                if not seen:
                    seen.update(client.run(describe_worker, nccl=be.name == "cupy", exclude=earlier))

            cluster_runner._after_step = after_step
            try:
                start = time.perf_counter()
                par, hist_par = pnn.fit(model, params, X, Y, client=client, **kw)
                t_par = time.perf_counter() - start
            finally:
                cluster_runner._after_step = None

            k = 8  # exchange: steps of 2-row batches, where the compute is about 0
            small = dict(epochs=1, batch_size=2)
            t_small_par = min(_timed(lambda: pnn.fit(model, params, X[: 2 * k], Y[: 2 * k], client=client,
                                                     **{**kw, **small})) for _ in range(2))
            t_small_one = min(one_process(Xd[: 2 * k, ...], Yd[: 2 * k, ...], **small)[0] for _ in range(2))
    finally:
        cluster.close()

    exchange = max(t_small_par - t_small_one, 0.0) / k
    dev = max_rel(one, par)
    parity_ok = bool(dev <= TOLERANCE)
    # the replicas' backend and device: the params' library; a GPU is each worker's first visible one
    want = cluster_runner.worker_backend(pnn.tree_leaves(params)[0])
    want_name, _, want_device = want.partition(":")
    workers: dict[str, Any] = {}
    held_ok = bool(seen)
    for address, w in sorted(seen.items()):
        workers[address] = w
        held_ok = held_ok and bool(w["replicas"])
        for r in w["replicas"]:
            held_ok = held_ok and r["backend"] == want_name and bool(r["shards"]) and all(
                s["owned"] and s["device"] == want_device for s in r["shards"].values())
            shards = ", ".join(f"shard {sid}: {s['rows']} rows as {s['type']} on {s['device']}"
                               for sid, s in r["shards"].items())
            extra = "" if "nccl" not in w else f", NCCL available: {w['nccl']}"
            print(f"worker {address} (pid {w['pid']}, CUDA_VISIBLE_DEVICES={w['cuda_visible_devices']}{extra}): "
                  f"replica on {r['backend']} {r['hardware']}; {shards or 'no shards'}")
    report.update(
        one_process={"seconds": t_one, "rows_per_s": rows / t_one, "loss": hist_one["loss"][-1]},
        cluster_fit={"seconds": t_par, "rows_per_s": rows / t_par, "loss": hist_par["loss"][-1]},
        exchange_s_per_step=exchange, max_rel_diff=dev, parity_ok=parity_ok, workers=workers,
        workers_hold_backend_arrays=held_ok, expected_worker_backend=want,
    )
    print(f"one process:        loss {hist_one['loss'][-1]:.6f}  {rows / t_one:10.0f} rows/s")
    print(f"{len(info)} Dask worker(s):   loss {hist_par['loss'][-1]:.6f}  {rows / t_par:10.0f} rows/s "
          f"({t_one / t_par:.2f}x one process); exchange {exchange * 1e3:.2f} ms/step")
    print(f"parity (float64): max relative difference of the params {dev:.2e} "
          f"({'ok' if parity_ok else 'FAILED'}: <= {TOLERANCE:g})")
    print(f"workers hold {want_name} arrays on {want_device}: {'yes' if held_ok else 'NO'}")
    return 0 if parity_ok and held_ok else 1


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", type=backend_arg, default="cupy",
                   help="the params' backend spec (default cupy; numpy, torch:cuda...); one not usable here "
                   "is a usage error (exit status 2)")
    p.add_argument("--cluster", choices=("auto", "cuda", "local"), default="auto",
                   help="auto: LocalCUDACluster when dask_cuda is importable, else LocalCluster")
    p.add_argument("--workers", type=positive_int, default=2,
                   help="workers of a LocalCluster (LocalCUDACluster: one per GPU)")
    p.add_argument("--rows", type=positive_int, default=8192)
    p.add_argument("--features", type=positive_int, default=64)
    p.add_argument("--hidden", type=positive_int, default=256)
    p.add_argument("--batch", type=positive_int, default=1024, help="global batch (rows per optimizer step)")
    p.add_argument("--epochs", type=positive_int, default=2)
    p.add_argument("--timeout", type=float, default=80.0, help="seconds before giving up (exit 124)")
    p.add_argument("--json", default=None, help="write the report there")
    args = p.parse_args(argv)
    if args.features < 9:
        p.error("--features must be at least 9 (the labels are made from the first 9)")

    def expire(signum: int, frame: Any) -> None:
        raise Timeout(f"ran past --timeout {args.timeout:g} s")

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, args.timeout)
    start = time.perf_counter()
    report: dict[str, Any] = {"parity_ok": False, "error": None}
    try:
        rc = run(args, report)
    except Timeout as e:
        rc, report["error"] = 124, str(e)
    except BaseException as e:  # noqa: BLE001 - report anything (Ctrl-C/SIGINT from timeout too) in the JSON
        rc, report["error"] = 1, f"{type(e).__name__}: {e}"
        traceback.print_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    report["elapsed_s"] = time.perf_counter() - start
    if report["error"]:
        print(f"dask_gpu_check FAILED: {report['error']}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, default=str)
    print(f"dask_gpu_check: rc={rc} in {report['elapsed_s']:.1f}s" + (f"; JSON in {args.json}" if args.json else ""))
    return rc


if __name__ == "__main__":
    sys.exit(main())
