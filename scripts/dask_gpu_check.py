"""Data-parallel fit(client=) on a loopback Dask cluster, on GPU params, against the one-process fit.

    python scripts/dask_gpu_check.py                      # --backend cupy: what scripts/gpu_check.sh runs
    python scripts/dask_gpu_check.py --backend numpy      # the same check on the CPU
    python scripts/dask_gpu_check.py --backend torch:cuda --json out.json
    python scripts/dask_gpu_check.py --exchange allreduce # only the all-reduce (default: both exchanges)

Starts ``dask_cuda.LocalCUDACluster`` (one worker per GPU, each seeing its own GPU as device 0) when
dask-cuda is importable, else ``distributed.LocalCluster`` with ``--workers`` processes on 127.0.0.1.
Trains an MLP (with dropout) in float64 from the same params and seed: in this process, and with
``pnn.fit(..., client=...)`` on the workers, whose replicas hold their row shards on the params'
backend, once per gradient exchange:

- ``allreduce`` (the default of ``client=``): the workers sum their gradients with a ``torch.distributed``
  all-reduce: NCCL when every worker has its own GPU and torch has NCCL there, else gloo through host
  memory (fit warns why; the check prints that warning as the reason NCCL was not used);
- ``hub`` (``pnn.DataParallel(client, exchange="hub")``): through the client, as host arrays.

Prints, and writes with ``--json``:

- parity per exchange: the largest relative difference of the params (``max|a - b| / max|a|`` over all
  leaves, ``portable_nn.tools.compare.param_deviation``); it must be <= 1e-12 (float64; measured ~1e-16);
- what the workers hold (asked from the running actors between two epochs): each replica's backend,
  device, the array type of its shards (e.g. ``cupy.ndarray`` on ``cuda:0``) and, for the all-reduce, the
  collective's backend (``nccl`` or ``gloo``); every shard must be an array of the params' library;
- rows/s of the one-process fit and of each cluster fit; the exchange time per step (the cluster's step
  time with 2-row batches, compute about 0, minus one process's, from the difference of a 24-step and an
  8-step fit so that a fit's set-up cancels out); for the all-reduce, the time a worker spends inside the
  collective per step.

Exit status: 0 when parity holds and the workers hold the params' arrays for every exchange run; 1 when
either fails or the check raised; 124 when it ran past ``--timeout`` seconds. The cluster is closed in
every case. NCCL missing is not a failure: the all-reduce then runs over gloo, and the report says why.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
import warnings
from typing import Any

import numpy as np

import portable_nn as pnn
from portable_nn.tools.arguments import backend_arg, positive_int
from portable_nn.tools.compare import param_deviation
from portable_nn.training import _allreduce, _shards

TOLERANCE = 1e-12


class Timeout(Exception):
    pass


def actor_keys(dask_worker: Any = None) -> list[str]:
    """Run on each worker: the keys of the actors it holds (those of an earlier fit may linger a while)."""
    return [str(key) for key in dask_worker.state.actors]


def describe_worker(dask_worker: Any = None, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Run on each worker (``client.run``): the fit's replicas (Dask actors, except the keys in ``exclude``)
    there, and the worker's GPU."""
    out: dict[str, Any] = {"pid": os.getpid(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                           "replicas": []}
    for key, obj in list(dask_worker.state.actors.items()):
        if str(key).startswith("pnn-replica-") and str(key) not in exclude and hasattr(obj, "describe"):
            out["replicas"].append({"key": str(key), **obj.describe()})
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
    exchanges = ("allreduce", "hub") if args.exchange == "both" else (args.exchange,)
    report.update(backend=args.backend, device=be.describe_device(), dtype="float64", rows=args.rows,
                  features=args.features, hidden=args.hidden, batch=args.batch, epochs=args.epochs,
                  tolerance=TOLERANCE, exchanges={})
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
    report["one_process"] = {"seconds": t_one, "rows_per_s": rows / t_one, "loss": hist_one["loss"][-1]}
    print(f"one process:        loss {hist_one['loss'][-1]:.6f}  {rows / t_one:10.0f} rows/s")
    # the replicas' backend and device: the params' library; a GPU is each worker's first visible one
    want = _shards.worker_backend(pnn.tree_leaves(params)[0])
    want_name, _, want_device = want.partition(":")
    report["expected_worker_backend"] = want

    ok = True
    cluster, kind = start_cluster(args.cluster, args.workers)
    try:
        with Client(cluster) as client:
            info = client.scheduler_info(n_workers=-1)["workers"]
            report.update(cluster=kind, n_workers=len(info))
            print(f"cluster: {kind} with {len(info)} worker(s) on {client.scheduler.address}")
            k = 8  # exchange: steps of 2-row batches, where the compute is about 0; k and 3k steps
            t_small_one = min(one_process(Xd[: 6 * k, ...], Yd[: 6 * k, ...], epochs=1, batch_size=2)[0]
                              for _ in range(2)) - min(one_process(Xd[: 2 * k, ...], Yd[: 2 * k, ...], epochs=1,
                                                                   batch_size=2)[0] for _ in range(2))
            for exchange in exchanges:
                out = check_exchange(client, exchange, model, params, X, Y, kw, k, rows, args)
                out["exchange_s_per_step"] = max(out.pop("small_s") - t_small_one, 0.0) / (2 * k)
                out["max_rel_diff"] = dev = param_deviation(out.pop("params"), one)
                out["parity_ok"] = bool(dev <= TOLERANCE)
                held_ok = bool(out["workers"])
                for address, w in sorted(out["workers"].items()):
                    held_ok = held_ok and bool(w["replicas"])
                    for r in w["replicas"]:
                        held_ok = held_ok and r["backend"] == want_name and bool(r["shards"]) and all(
                            s["owned"] and s["device"] == want_device for s in r["shards"].values())
                        shards = ", ".join(f"shard {sid}: {s['rows']} rows as {s['type']} on {s['device']}"
                                           for sid, s in r["shards"].items())
                        coll = f", all-reduce over {r['collective']}" if r.get("collective") else ""
                        print(f"  worker {address} (pid {w['pid']}, CUDA_VISIBLE_DEVICES={w['cuda_visible_devices']}):"
                              f" replica on {r['backend']} {r['hardware']}{coll}; {shards or 'no shards'}")
                out["workers_hold_backend_arrays"] = held_ok
                ok = ok and out["parity_ok"] and held_ok
                report["exchanges"][exchange] = out
                inside = "" if out.get("collective_s_per_step") is None else \
                    f", {out['collective_s_per_step'] * 1e3:.2f} ms/step inside the {out['collective']} all-reduce"
                print(f"{exchange:9s} on {len(info)} worker(s): loss {out['loss']:.6f}  {out['rows_per_s']:10.0f} rows/s "
                      f"({out['rows_per_s'] / (rows / t_one):.2f}x one process); exchange "
                      f"{out['exchange_s_per_step'] * 1e3:.2f} ms/step{inside}")
                print(f"  parity (float64): max relative difference of the params {dev:.2e} "
                      f"({'ok' if out['parity_ok'] else 'FAILED'}: <= {TOLERANCE:g}); workers hold {want_name} "
                      f"arrays on {want_device}: {'yes' if held_ok else 'NO'}")
                if out.get("nccl_note"):
                    print(f"  NCCL not used: {out['nccl_note']}")
    finally:
        cluster.close()
    first = report["exchanges"][exchanges[0]]
    report.update(  # the first exchange's numbers at the top level (the all-reduce unless --exchange hub)
        cluster_fit={"seconds": first["seconds"], "rows_per_s": first["rows_per_s"], "loss": first["loss"]},
        exchange_s_per_step=first["exchange_s_per_step"],
        max_rel_diff=max(e["max_rel_diff"] for e in report["exchanges"].values()),
        parity_ok=all(e["parity_ok"] for e in report["exchanges"].values()),
        workers_hold_backend_arrays=all(e["workers_hold_backend_arrays"] for e in report["exchanges"].values()),
        workers=first["workers"],
    )
    return 0 if ok else 1


def check_exchange(client: Any, exchange: str, model: Any, params: Any, X: Any, Y: Any, kw: dict[str, Any],
                   k: int, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    """One exchange: a warm-up fit, the timed fit (the workers described between its first two epochs), the
    exchange's 2-row steps; returns its part of the report (with ``params`` and ``small_s`` to use up)."""
    dp = pnn.DataParallel(client, exchange=exchange)
    t = time.perf_counter()
    pnn.fit(model, params, X[: 2 * args.batch], Y[: 2 * args.batch], client=dp, **{**kw, "epochs": 1})
    print(f"{exchange}: warm-up fit on the cluster: {time.perf_counter() - t:.1f}s")
    seen: dict[str, Any] = {}
    earlier = frozenset(key for keys in client.run(actor_keys).values() for key in keys)

    class Describe:  # between epochs the actors hold their shards (and the all-reduce its group)
        def on_epoch_end(self, epoch: int, history: Any, params: Any) -> None:
            if not seen:
                seen.update(client.run(describe_worker, exclude=earlier))

    inside: list[tuple[float, str]] = []
    _allreduce._after_chunk = lambda r: inside.append((r.collective_s / max(r.steps_run, 1), r.exchange))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            par, hist = pnn.fit(model, params, X, Y, client=dp, callbacks=[Describe()], **kw)
            seconds = time.perf_counter() - start
    finally:
        _allreduce._after_chunk = None
    small = dict(epochs=1, batch_size=2)
    small_s = min(_timed(lambda: pnn.fit(model, params, X[: 6 * k], Y[: 6 * k], client=dp, **{**kw, **small}))
                  for _ in range(2)) - min(_timed(lambda: pnn.fit(model, params, X[: 2 * k], Y[: 2 * k], client=dp,
                                                                  **{**kw, **small})) for _ in range(2))
    nccl = [str(w.message) for w in caught if "NCCL" in str(w.message)]
    return {"seconds": seconds, "rows_per_s": rows / seconds, "loss": hist["loss"][-1], "params": par,
            "small_s": small_s, "workers": seen,
            "collective": inside[-1][1] if inside else None,
            "collective_s_per_step": inside[-1][0] if inside else None,
            "nccl_note": nccl[0] if nccl else None}


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
    p.add_argument("--exchange", choices=("both", "allreduce", "hub"), default="both",
                   help="the gradient exchanges to check (default both)")
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
