"""Data-parallel training with Dask
================================

Data-parallel training on a Dask cluster, and the same run in one process.

::

    pip install -e ".[dask]"
    python examples/dask_data_parallel.py            # 2 local worker processes on loopback

Starts a LocalCluster, builds a Dask array of several blocks, and trains an MLP three ways from the same
params and seed: in this process on the data in memory, in this process streaming the Dask array block by
block, and with ``client=`` on the workers (each holds a row shard and a params replica). It prints how
far the cluster's params are from the one-process params (float64: to rounding, <= 1e-12 relative) and
the throughput of each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import portable_nn as pnn
from portable_nn.tools.arguments import positive_int

# gallery-args: --rows 8192 --hidden 64 --epochs 1


def max_rel(a: object, b: object) -> float:
    pairs = zip(pnn.tree_leaves(a), pnn.tree_leaves(b), strict=True)
    return max(float(np.max(np.abs(x - y)) / np.max(np.abs(x))) for x, y in pairs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])  # the line under the title
    p.add_argument("--rows", type=positive_int, default=32768)
    p.add_argument("--block-rows", type=positive_int, default=4096, help="rows per Dask block")
    p.add_argument("--hidden", type=positive_int, default=256)
    p.add_argument("--batch", type=positive_int, default=1024, help="global batch (rows per optimizer step)")
    p.add_argument("--epochs", type=positive_int, default=2)
    p.add_argument("--workers", type=positive_int, default=2)
    args = p.parse_args()
    # imported once the arguments are checked: a typo fails at once, even where Dask is not installed
    import dask.array as da
    from distributed import Client, LocalCluster

    rng = da.random.default_rng(0)
    X = rng.standard_normal((args.rows, 64), chunks=(args.block_rows, 64))  # float64, lazily generated
    Y = (X[:, :8].sum(axis=1) > 0).astype("int64") + 2 * (X[:, 8] > 1)  # 4 classes from the inputs
    X, Y = X.persist(scheduler="threads"), Y.persist(scheduler="threads")
    print(f"data: {X.shape} in {X.numblocks[0]} blocks of {args.block_rows} rows")

    model = pnn.Sequential(pnn.Linear(64, args.hidden), pnn.ReLU(), pnn.Dropout(0.1), pnn.Linear(args.hidden, 4))
    params = model.init(seed=0, dtype="float64")
    kw = dict(loss=pnn.losses.softmax_cross_entropy, optimizer=pnn.optim.Adam(1e-3), epochs=args.epochs,
              batch_size=args.batch, seed=1, progress=False)
    Xh, Yh = X.compute(), Y.compute()

    pnn.fit(model, params, Xh[: args.batch], Yh[: args.batch], **{**kw, "epochs": 1})  # warm up
    t = time.perf_counter()
    one, hist = pnn.fit(model, params, Xh, Yh, **kw)
    t_one = time.perf_counter() - t
    t = time.perf_counter()
    _, hist_s = pnn.fit(model, params, X, Y, **kw)  # streamed: shuffled blocks, shuffled rows within each
    t_stream = time.perf_counter() - t

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster, \
            Client(cluster) as client:
        pnn.fit(model, params, Xh[: args.batch], Yh[: args.batch], client=client, **{**kw, "epochs": 1})  # warm up
        t = time.perf_counter()
        par, hist_c = pnn.fit(model, params, Xh, Yh, client=client, **kw)
        t_par = time.perf_counter() - t

    rows = args.rows * args.epochs
    print(f"one process (in memory):   loss {hist['loss'][-1]:.5f}  {rows / t_one:9.0f} rows/s")
    print(f"one process (Dask stream): loss {hist_s['loss'][-1]:.5f}  {rows / t_stream:9.0f} rows/s")
    print(f"{args.workers} Dask workers (client=): loss {hist_c['loss'][-1]:.5f}  {rows / t_par:9.0f} rows/s "
          f"({t_one / t_par:.2f}x one process)")
    print(f"parity: params of the cluster run vs one process: max relative difference {max_rel(one, par):.2e}")


if __name__ == "__main__":
    main()
