"""Dask: fit/predict/evaluate streaming Dask arrays block by block, and data-parallel fit(client=).

Skipped where dask or distributed is not installed (the ``dask`` nox session installs them). The
cluster tests use the session's 2-worker LocalCluster on loopback (tests/conftest.py), float64 NumPy
params; ``client=client`` is the all-reduce exchange (more of it in tests/test_allreduce.py), the tests
of the hub exchange pass ``pnn.DataParallel(client, exchange="hub")``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest

import portable_nn as pnn

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from portable_nn.training import _cluster as cluster_runner  # noqa: E402
from portable_nn.training._dask_data import DaskData, DaskSource, check_dask_data  # noqa: E402

from ._dask_support import loopback_cluster, max_rel, same, set_worker_hook  # noqa: E402

CE = pnn.losses.softmax_cross_entropy


def _data(n: int = 600, d: int = 6, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, k, size=n)


def _model(dropout: float = 0.0) -> pnn.Sequential:
    layers: list[pnn.Layer] = [pnn.Linear(6, 16), pnn.Tanh()]
    if dropout:
        layers.append(pnn.Dropout(dropout))
    return pnn.Sequential(*layers, pnn.Linear(16, 3))


# --- streaming Dask data in one process -------------------------------------------------------------------


def test_import_portable_nn_does_not_import_dask():
    code = "import portable_nn, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("stateful", [False, True], ids=["mlp", "batchnorm"])
def test_streamed_fit_without_shuffle_equals_in_memory_fit(tb, stateful):
    """Bit for bit where both run the same portable steps; to rounding where JAX compiles them differently."""
    X, Y = _data()
    X = X.astype(tb.float)  # float32 where the device has no float64
    bn = pnn.Sequential(pnn.Linear(6, 8, bias=False), pnn.BatchNorm(8), pnn.ReLU(), pnn.Linear(8, 3))  # no bias: BN removes it
    model = bn if stateful else _model()
    params = tb.init(model, seed=1)
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.Adam(0.01), epochs=2, batch_size=64, shuffle=False)
    want, hist = pnn.fit(model, params, tb.asarray(X, tb.float), tb.asarray(Y), validation_data=(X, Y), **kw)
    Xd, Yd = da.from_array(X, chunks=(110, 6)), da.from_array(Y, chunks=110)  # blocks don't align with batches
    got, hist_d = pnn.fit(model, params, Xd, Yd, validation_data=(Xd, Yd), **kw)
    if not tb.be.adapter.jit_by_default:
        assert same(want, got)
        assert hist_d["loss"] == hist["loss"] and hist_d["accuracy"] == hist["accuracy"]
    else:  # JAX: in memory, whole epochs compile into one scan; streamed, each step is jitted: XLA rounds apart
        tol = 1e-12 if tb.float == "float64" else 1e-5
        assert max_rel(want, got) <= tol
        assert np.allclose(hist_d["loss"], hist["loss"], rtol=tol) and hist_d["accuracy"] == hist["accuracy"]
    assert np.allclose(hist_d["val_loss"], hist["val_loss"], rtol=1e-6)
    assert np.allclose(pnn.to_numpy(pnn.predict(model, got, Xd, batch_size=50)),
                       pnn.to_numpy(pnn.predict(model, got, X)), rtol=1e-6, atol=1e-6)
    assert np.allclose(pnn.evaluate(model, got, Xd, Yd, loss=CE)[0], pnn.evaluate(model, got, X, Y, loss=CE)[0])


def test_dask_source_gives_the_in_memory_batches_of_any_order_from_any_step():
    X, Y = _data(n=503)
    Xd = da.from_array(np.column_stack([np.arange(503.0), X[:, 1:]]), chunks=(97, 6))
    params = _model().init(seed=0, dtype="float64")
    data, counts = check_dask_data("fit", _model(), params, Xd, Y, CE)
    assert counts and data.n_blocks == 6
    source = DaskSource(data, counts)
    order = np.random.default_rng(0).permutation(503)
    for start in (0, 3):
        got = list(source.batches(order, 64, start))
        assert [step for step, _ in got] == list(range(start, 8))
        for step, (Xb, Yb, Wb) in got:
            rows = order[step * 64 : (step + 1) * 64]
            assert Wb is None and np.array_equal(Xb[:, 0], rows) and np.array_equal(Yb, Y[rows])
    assert np.array_equal(np.concatenate([Xb[:, 0] for _, (Xb, _, _) in source.batches(None, 64)]), np.arange(503))


def test_shuffle_blocks_reads_each_block_once_per_epoch_and_keeps_blocks_together(monkeypatch):
    X, Y = _data(n=503)
    Xd = da.from_array(np.column_stack([np.arange(503.0), X[:, 1:]]), chunks=(97, 6))
    loads: list[int] = []
    real = DaskData.load
    monkeypatch.setattr(DaskData, "load", lambda self, i: (loads.append(i), real(self, i))[1])
    seen: list[np.ndarray] = []
    real_batches = DaskSource.batches

    def record(self, order, batch_size, start=0):
        seen.append(np.arange(503) if order is None else np.asarray(order))
        yield from real_batches(self, order, batch_size, start)

    monkeypatch.setattr(DaskSource, "batches", record)
    model = _model()
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.SGD(0.01), epochs=2, batch_size=64, seed=5,
                              progress=False, shuffle="blocks")
    pnn.fit(model, model.init(seed=0, dtype="float64"), Xd, Y, **kw)
    assert sorted(loads) == sorted(list(range(6)) * 2)  # each block once per epoch
    for order in seen:
        assert sorted(order.tolist()) == list(range(503))
        blocks = order // 97
        assert (np.diff(blocks) != 0).sum() == 5  # a block's rows come together
    assert not np.array_equal(seen[0], seen[1])
    with pytest.raises(ValueError, match="shuffle='blocks' needs Dask data"):
        pnn.fit(model, model.init(seed=0, dtype="float64"), X, Y, **kw)


def test_in_memory_streamed_and_cluster_runs_give_the_same_params(client, deadline):
    """One batch order: for a given (n, batch_size, seed, shuffle) the same batches wherever the data live."""
    X, Y = _data(n=301)
    model = _model(dropout=0.1)
    params = model.init(seed=2, dtype="float64")
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.Adam(0.01), epochs=3, batch_size=32, seed=7, progress=False)
    mem, h_mem = pnn.fit(model, params, X, Y, **kw)
    Xd, Yd = da.from_array(X, chunks=(70, 6)), da.from_array(Y, chunks=70)
    streamed, h_str = pnn.fit(model, params, Xd, Yd, **kw)
    cluster, h_cl = pnn.fit(model, params, Xd, Yd, client=client, **kw)
    assert same(mem, streamed) and h_mem == h_str  # the same portable steps: bit for bit
    assert max_rel(mem, cluster) <= 1e-12
    assert np.allclose(h_cl["loss"], h_mem["loss"], rtol=1e-12)


def test_streamed_fit_is_seeded_and_learns():
    X, Y = _data()
    model = _model()
    params = model.init(seed=1, dtype="float64")
    Xd, Yd = da.from_array(X, chunks=(100, 6)), da.from_array(Y, chunks=100)
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.Adam(0.02), epochs=4, batch_size=32, seed=3)
    a, ha = pnn.fit(model, params, Xd, Yd, **kw)
    b, hb = pnn.fit(model, params, Xd, Y, **kw)  # Y in memory: wrapped with X's blocks
    assert same(a, b) and ha == hb
    assert ha["loss"][-1] < ha["loss"][0]


def test_dask_data_errors_before_any_work():
    X, Y = _data()
    model = _model()
    params = model.init(seed=1, dtype="float64")
    Xd, Yd = da.from_array(X, chunks=(100, 6)), da.from_array(Y, chunks=100)
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.SGD(0.1), epochs=1)
    with pytest.raises(ValueError, match="X has 600 rows but Y has 599"):
        pnn.fit(model, params, Xd, Yd[:599], **kw)
    with pytest.raises(TypeError, match="X has dtype int64; floating data"):
        pnn.fit(model, params, Xd.astype("int64"), Yd, **kw)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\).*\[0, 7\]"):
        pnn.fit(model, params, Xd, da.from_array(np.where(Y == 2, 7, Y), chunks=100), **kw)
    with pytest.raises(ValueError, match="unknown chunk sizes.*compute_chunk_sizes"):
        pnn.fit(model, params, Xd[Xd[:, 0] > 0], Yd[Xd[:, 0] > 0], **kw)
    with pytest.raises(ValueError, match="X_val has shape"):
        pnn.fit(model, params, Xd, Yd, validation_data=(Xd[:, :5], Yd), **kw)
    with pytest.raises(ValueError, match="accumulate=k needs client="):
        pnn.fit(model, params, X, Y, accumulate=2, **kw)
    bad = X.copy()
    bad[345, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf.*block 3, rows 300..399"):
        pnn.fit(model, params, da.from_array(bad, chunks=(100, 6)), Yd, shuffle=False, **kw)


def test_streamed_fit_nan_raises_with_last_finite_params_and_ctrl_c_stops_between_steps():
    X, Y = _data()
    model = _model()
    params = model.init(seed=1, dtype="float64")
    linear = pnn.Sequential(pnn.Linear(6, 3))
    Xd, Yd = da.from_array(X * 1e200, chunks=(100, 6)), da.from_array(Y, chunks=100)
    with pytest.raises(pnn.NonFiniteError) as err, np.errstate(over="ignore", invalid="ignore"):
        pnn.fit(linear, linear.init(dtype="float64"), Xd, Yd, loss=CE, optimizer=pnn.optim.SGD(1e200), epochs=1)
    assert all(np.isfinite(pnn.to_numpy(p)).all() for p in pnn.tree_leaves(err.value.params))

    class CtrlC:
        def on_epoch_end(self, epoch: int, history: Any, params: Any) -> None:
            os.kill(os.getpid(), signal.SIGINT)  # held until the epoch's bookkeeping is done

    Xd = da.from_array(X, chunks=(100, 6))
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.SGD(0.1), batch_size=50)
    one, _ = pnn.fit(model, params, Xd, Yd, epochs=1, **kw)
    with pytest.raises(pnn.FitInterrupted) as stop:
        pnn.fit(model, params, Xd, Yd, epochs=3, callbacks=[CtrlC()], **kw)
    assert same(one, stop.value.params) and len(stop.value.history["loss"]) == 1


# --- data-parallel on a LocalCluster -------------------------------------------------------------------------


@pytest.fixture
def client(dask_client: Any) -> Any:
    """The session's 2-worker loopback cluster (tests/conftest.py)."""
    return dask_client


def test_cluster_fit_equals_one_process_in_float64_with_dropout(client, deadline):
    X, Y = _data()
    model = _model(dropout=0.3)
    params = model.init(seed=1, dtype="float64")
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.Adam(0.01), epochs=2, batch_size=64, seed=5,
                              validation_data=(X[:100], Y[:100]))
    want, hist = pnn.fit(model, params, X, Y, **kw)
    got, hist_c = pnn.fit(model, params, X, Y, client=client, **kw)
    assert max_rel(want, got) <= 1e-12
    assert np.allclose(hist_c["loss"], hist["loss"], rtol=1e-12) and hist_c["accuracy"] == hist["accuracy"]
    acc, _ = pnn.fit(model, params, X, Y, client=client, accumulate=3, **kw)  # 3 micro-batches per worker
    assert max_rel(want, acc) <= 1e-12


@pytest.mark.parametrize("exchange", ["allreduce", "hub"])
def test_layernorm_params_get_their_own_gradients(client, deadline, exchange):
    # LayerNorm's params are {"gamma", "beta"}: the hub used to map the summed gradients back in
    # tree_leaves order (sorted: beta, gamma) onto the dict's order, swapping the two
    X, Y = _data()
    model = pnn.Sequential(pnn.Linear(6, 8), pnn.LayerNorm(8), pnn.Tanh(), pnn.Linear(8, 3))
    params = model.init(seed=1, dtype="float64")
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.SGD(0.1), epochs=1, batch_size=100, progress=False)
    want, _ = pnn.fit(model, params, X, Y, **kw)
    got, _ = pnn.fit(model, params, X, Y, client=pnn.DataParallel(client, exchange=exchange), **kw)
    assert max_rel(want, got) <= 1e-12


def test_cluster_fit_reads_dask_shards_and_sum_losses(client, deadline):
    X, Y = _data()
    T = np.random.default_rng(1).standard_normal((600, 3))
    model = _model()
    params = model.init(seed=1, dtype="float64")
    for loss, target in ((CE, Y), (pnn.losses.sum_squared_error, T)):
        kw: dict[str, Any] = dict(loss=loss, optimizer=pnn.optim.SGD(0.001), epochs=1, batch_size=100)
        want, _ = pnn.fit(model, params, X, target, **kw)
        got, _ = pnn.fit(model, params, da.from_array(X, chunks=(150, 6)), da.from_array(target, chunks=150),
                         client=client, **kw)
        assert max_rel(want, got) <= 1e-12


def test_cluster_fit_refuses_batch_statistics_and_bad_clients(client):
    X, Y = _data()
    model = pnn.Sequential(pnn.Linear(6, 3), pnn.BatchNorm(3))
    variables = model.init(seed=0, dtype="float64")
    with pytest.raises(ValueError, match=r"BatchNorm\(3\).*batch statistics.*client= does not support"):
        pnn.fit(model, variables, X, Y, loss=CE, optimizer=pnn.optim.SGD(0.1), client=client)
    with pytest.raises(TypeError, match="client must be a distributed.Client"):
        pnn.fit(_model(), _model().init(dtype="float64"), X, Y, loss=CE, optimizer=pnn.optim.SGD(0.1), client="x")


def test_hub_ctrl_c_and_lost_client_keep_the_last_completed_step(client, deadline, monkeypatch):
    X, Y = _data()
    model = _model()
    params = model.init(seed=1, dtype="float64")
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.SGD(0.1), batch_size=100)
    hub = pnn.DataParallel(client, exchange="hub")
    one, _ = pnn.fit(model, params, X, Y, client=hub, epochs=1, **kw)
    monkeypatch.setattr(cluster_runner, "_after_step", lambda k: k == 6 and os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(pnn.FitInterrupted) as stop:
        pnn.fit(model, params, X, Y, client=hub, epochs=3, **kw)
    assert same(one, stop.value.params)

    other = distributed.Client(client.scheduler.address)
    monkeypatch.setattr(cluster_runner, "_after_step", lambda k: k == 6 and other.close())
    with pytest.raises(pnn.ClusterError, match="client is closed") as err:
        pnn.fit(model, params, X, Y, client=pnn.DataParallel(other, exchange="hub"), epochs=3, **kw)
    assert same(one, err.value.params) and (err.value.epoch, err.value.step) == (1, 0)


@pytest.mark.parametrize("exchange", ["allreduce", "hub"])
def test_cluster_replicas_work_on_the_params_device_not_the_library_default(client, deadline, exchange):
    # a CPU stand-in for torch:cuda / jax:gpu params: params on array_api_strict's "device1" must give
    # replicas on device1 (the library's default device is CPU_DEVICE, as torch's and JAX's is the CPU)
    strict = pytest.importorskip("array_api_strict")
    be = pnn.get_backend("array_api_strict:device1")
    X, Y = _data()
    model = _model(dropout=0.2)
    params = model.init(seed=1, backend=be, dtype="float64")
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.Adam(0.01), epochs=2, batch_size=64, seed=2)
    want, _ = pnn.fit(model, params, be.asarray(X), be.asarray(Y), **kw)
    seen: dict[str, Any] = {}
    earlier = {k for keys in client.run(lambda dask_worker: list(dask_worker.state.actors)).values() for k in keys}

    def describe(dask_worker: Any = None) -> list[Any]:  # this fit's actors (an earlier fit's may linger)
        return [a.describe() for k, a in list(dask_worker.state.actors.items())
                if hasattr(a, "describe") and k not in earlier]

    class Describe:  # between epochs the actors hold their shards
        def on_epoch_end(self, epoch: int, history: Any, params: Any) -> None:
            if not seen:
                seen.update(client.run(describe))

    got, _ = pnn.fit(model, params, X, Y, client=pnn.DataParallel(client, exchange=exchange), callbacks=[Describe()],
                     **kw)
    assert max_rel(want, got) <= 1e-12
    assert all(isinstance(a, type(strict.asarray(0.0))) and a.device == be.device for a in pnn.tree_leaves(got))
    shards = [s for replicas in seen.values() for r in replicas if r["device"] == "device1"
              for s in r["shards"].values()]
    assert len(shards) == 2 and all(s["owned"] and s["device"] == "device1" for s in shards), seen


def test_worker_backend_keeps_the_library_and_device_and_maps_a_gpu_to_the_workers_first(monkeypatch):
    pytest.importorskip("array_api_strict")
    assert cluster_runner.worker_backend(np.zeros(2)) == "numpy:cpu"
    leaf = pnn.get_backend("array_api_strict:device1").asarray([1.0])
    assert cluster_runner.worker_backend(leaf) == "array_api_strict:device1"
    ad = pnn.backends.adapter("array_api_strict")
    # a GPU of the client (here a pretend cuda:3) is each worker's own first GPU (CUDA_VISIBLE_DEVICES)
    monkeypatch.setattr(type(ad), "is_gpu", lambda self, device: True)
    monkeypatch.setattr(type(ad), "device_label", lambda self, device: "cuda:3")
    assert cluster_runner.worker_backend(leaf) == "array_api_strict:cuda:0"


def test_dask_gpu_check_script_on_numpy_reports_parity_and_what_the_workers_hold(tmp_path, request):
    if request.config.getoption("--backend") != "numpy":
        pytest.skip("the script's CPU run is on NumPy (scripts/gpu_check.sh runs it on cupy)")
    pytest.importorskip("torch.distributed")
    out = tmp_path / "dask_gpu.json"
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "dask_gpu_check.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(pnn.__file__)),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, script, "--backend", "numpy", "--cluster", "local", "--rows", "1024",
                           "--hidden", "32", "--batch", "256", "--epochs", "2", "--timeout", "100",
                           "--json", str(out)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads(out.read_text())
    assert got["parity_ok"] is True and got["max_rel_diff"] <= 1e-12 and got["error"] is None
    assert got["workers_hold_backend_arrays"] is True and got["n_workers"] == 2
    assert got["cluster_fit"]["rows_per_s"] > 0 and got["exchange_s_per_step"] >= 0
    ar, hub = got["exchanges"]["allreduce"], got["exchanges"]["hub"]
    assert ar["collective"] == "gloo" and ar["collective_s_per_step"] > 0 and ar["nccl_note"] is None
    assert hub["parity_ok"] and hub["collective"] is None
    assert "parity (float64)" in proc.stdout and "numpy.ndarray on cpu" in proc.stdout
    assert "all-reduce over gloo" in proc.stdout


def test_hub_killed_worker_mid_fit_does_not_change_the_result(client, deadline, monkeypatch):
    X, Y = _data()
    model = _model(dropout=0.2)
    params = model.init(seed=1, dtype="float64")
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.Adam(0.01), epochs=2, batch_size=64, seed=2)
    want, _ = pnn.fit(model, params, X, Y, **kw)
    pids = client.run(os.getpid)
    victim = pids[sorted(pids)[1]]

    def kill(k: int) -> None:
        if k == 5:
            os.kill(victim, signal.SIGKILL)
            time.sleep(0.2)

    monkeypatch.setattr(cluster_runner, "_after_step", kill)
    with pytest.warns(RuntimeWarning, match=r"lost worker.*moving shard\(s\) \[1\]"):
        got, _ = pnn.fit(model, params, X, Y, client=pnn.DataParallel(client, exchange="hub"), **kw)
    assert max_rel(want, got) <= 1e-12
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it


def test_every_worker_lost_raises_cluster_error_with_the_last_step(deadline, monkeypatch, request):
    """The hub knows every step; the all-reduce knows the params of each chunk (here: each epoch)."""
    if request.config.getoption("--backend") != "numpy":
        pytest.skip("the cluster tests run on the numpy backend")
    X, Y = _data()
    model = _model()
    params = model.init(seed=1, dtype="float64")
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.SGD(0.1), batch_size=100, shuffle=False)
    with loopback_cluster(1) as cluster, distributed.Client(cluster) as c:
        three, _ = pnn.fit(model, params, X[:300], Y[:300], epochs=1, **kw)
        (pid,) = c.run(os.getpid).values()
        monkeypatch.setattr(cluster_runner, "_after_step", lambda k: k == 3 and os.kill(pid, signal.SIGKILL))
        with pytest.raises(pnn.ClusterError, match="every worker of the cluster was lost") as err:
            pnn.fit(model, params, X, Y, client=pnn.DataParallel(c, exchange="hub"), epochs=1, **kw)
        assert max_rel(three, err.value.params) <= 1e-12 and err.value.step == 3

        c.wait_for_workers(1, timeout=60)  # the nanny restarts it
        one, _ = pnn.fit(model, params, X, Y, epochs=1, **kw)
        set_worker_hook(c, lambda k, member: k == 8 and os.kill(os.getpid(), signal.SIGKILL))
        with pytest.raises(pnn.ClusterError, match="every worker of the cluster was lost") as err:
            pnn.fit(model, params, X, Y, client=c, epochs=3, validation_data=(X[:50], Y[:50]), **kw)
    assert max_rel(one, err.value.params) <= 1e-12 and (err.value.epoch, err.value.step) == (1, 0)


# --- checkpoints on the streamed and cluster paths: SIGKILL, then resume ---------------------------------------

_KILL_CHILD = r"""
import os, sys, time
import numpy as np
import dask.array as da
import portable_nn as pnn
import portable_nn.io as io

real_replace = os.replace
def slow_replace(src, dst):  # a slow disk: most of a save's time is before the rename
    time.sleep(0.01)
    real_replace(src, dst)
io.os.replace = slow_replace

mode, address, path, out = sys.argv[1:5]
rng = np.random.default_rng(0)
X = rng.standard_normal((320, 6))
Y = rng.integers(0, 3, size=320)
Xd, Yd = da.from_array(X, chunks=(70, 6)), da.from_array(Y, chunks=70)
model = pnn.Sequential(pnn.Linear(6, 16), pnn.Tanh(), pnn.Dropout(0.1), pnn.Linear(16, 3))
params = model.init(seed=1, dtype="float64")
kw = dict(loss=pnn.losses.softmax_cross_entropy, optimizer=pnn.optim.Adam(1e-2), epochs=8, batch_size=16,
          seed=4, validation_data=(Xd[:64], Yd[:64]), progress=False)
if path != "-":
    kw.update(checkpoint=path, checkpoint_every=3, resume=True)
client = None
if mode == "client":
    from distributed import Client
    client = Client(address, timeout=30)

class Progress:
    def on_epoch_end(self, epoch, history, params):
        print(f"epoch {epoch}", flush=True)

print("ready", flush=True)
params, history = pnn.fit(model, params, Xd, Yd, client=client, callbacks=[Progress()], **kw)
pnn.save(out, {"params": params, "history": {k: np.asarray(v) for k, v in history.items()}})
"""


@pytest.mark.parametrize("mode", ["streamed", "client"])
def test_sigkill_then_resume_gives_the_uninterrupted_params_on_dask_paths(mode, client, tmp_path, deadline):
    """Streamed Dask data: bit for bit; client=: within 1e-12 (float64) of the uninterrupted run."""
    script = tmp_path / "child.py"
    script.write_text(_KILL_CHILD)
    address = client.scheduler.address
    ckpt, out, ref = tmp_path / "run.safetensors", tmp_path / "out.safetensors", tmp_path / "ref.safetensors"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(pnn.__file__)),
                                                        os.environ.get("PYTHONPATH", "")])}

    def start(path: Any, dest: Any) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, str(script), mode, address, str(path), str(dest)],
                                stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    assert start("-", ref).wait(timeout=100) == 0
    killed = 0
    for after_epoch, delay in zip((0, 2, 5), np.random.default_rng(7).uniform(0.0, 0.05, size=3), strict=True):
        proc = start(ckpt, out)
        assert proc.stdout is not None
        while (line := proc.stdout.readline()) and line.strip() != f"epoch {after_epoch}":
            pass
        time.sleep(float(delay))  # mid-epoch, often mid-save (checkpoint_every=3 steps)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
    assert killed == 3, "the kills must land while the run trains"
    assert ckpt.exists() and not out.exists()
    assert start(ckpt, out).wait(timeout=100) == 0
    want, got = pnn.load(str(ref)), pnn.load(str(out))
    if mode == "streamed":
        assert same(want, got)
    else:
        assert max_rel(want["params"], got["params"]) <= 1e-12
        assert np.allclose(pnn.to_numpy(got["history"]["loss"]), pnn.to_numpy(want["history"]["loss"]), rtol=1e-12)


# --- out of core: a Zarr store 4x larger than the memory the fit may add -------------------------------------

_RSS_CHILD = r"""
import json, sys
import dask.array as da
import portable_nn as pnn

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)

path = sys.argv[1]
X, Y = da.from_zarr(path, component="X"), da.from_zarr(path, component="Y")
model = pnn.Sequential(pnn.Linear(X.shape[1], 32), pnn.ReLU(), pnn.Linear(32, 10))
params = model.init(seed=0, dtype="float32")
kw = dict(loss=pnn.losses.softmax_cross_entropy, optimizer=pnn.optim.SGD(0.01), batch_size=256, progress=False,
          shuffle="blocks")  # each block read once per epoch: the mode for data larger than memory
pnn.fit(model, params, X[:4096], Y[:4096], epochs=1, **kw)  # warm up: lazy imports, thread pools
try:
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
except OSError:
    pass
before = status("VmRSS:")
params, hist = pnn.fit(model, params, X, Y, epochs=1, validation_data=(X[:8192], Y[:8192]), **kw)
out = pnn.predict(model, params, X)
peak = status("VmHWM:")
print(json.dumps({"before": before, "peak": peak, "rows": int(out.shape[0]), "loss": hist["loss"][-1]}))
"""


def test_out_of_core_fit_keeps_memory_under_a_cap_the_data_exceeds_4x(tmp_path, request, deadline):
    if request.config.getoption("--backend") != "numpy" or not os.path.exists("/proc/self/status"):
        pytest.skip("measured on Linux with NumPy params")
    pytest.importorskip("zarr")
    n, d, rows = 65536, 512, 1024  # float32: 128 MiB of X in 128 blocks of 2 MiB
    cap = 32 * 2**20
    rng = da.random.default_rng(0)
    store = str(tmp_path / "data.zarr")
    da.to_zarr(rng.standard_normal((n, d), chunks=(rows, d), dtype="float32"), store, component="X")
    da.to_zarr(rng.integers(0, 10, size=n, chunks=rows), store, component="Y")
    assert n * d * 4 >= 4 * cap
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, store], capture_output=True, text=True, env=env,
                          timeout=110)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    got = json.loads(proc.stdout.strip().splitlines()[-1])
    grew = got["peak"] - got["before"]
    print(f"out-of-core: data {n * d * 4 / 2**20:.0f} MiB, fit + predict grew RSS by {grew / 2**20:.1f} MiB "
          f"(cap {cap / 2**20:.0f} MiB; peak {got['peak'] / 2**20:.0f} MiB)")
    assert got["rows"] == n and np.isfinite(got["loss"])
    assert grew < cap, f"peak RSS grew by {grew / 2**20:.1f} MiB, over the {cap / 2**20:.0f} MiB cap"


def test_bench_case_h_tiny_reports_both_exchanges(request):
    if request.config.getoption("--backend") != "numpy":
        pytest.skip("bench runs on NumPy")
    pytest.importorskip("torch.distributed")
    from benchmarks import run_bench

    report = run_bench(["h"], profile="tiny", libraries=[], isolate=False, progress=False)
    (case,) = report.cases
    assert not case.failed, case.failed
    got = case.settings
    assert got["throughput_ratio"] > 0 and got["hub_throughput_ratio"] > 0
    assert got["exchange_s_per_step"] > 0 and got["hub_exchange_s_per_step"] > 0
    assert got["collective_s_per_step"] > 0 and got["collective_wait_s_per_step"] > 0
    assert got["client_cpu_s_per_step"] > 0 and got["max_rel_dev"] < 1e-4
    table = case.table()
    assert "hub (through the client)" in table and "all-reduce (gloo)" in table and "client CPU/step" in table
    assert "exchange/step" in table


# --- regressions found by adversarial testing ------------------------------------------------------------------


def test_streamed_bn_fit_with_a_one_row_last_batch_raises_before_any_step():
    X, Y = _data(n=33)
    model = pnn.Sequential(pnn.Linear(6, 4), pnn.BatchNorm(4), pnn.Linear(4, 3))
    variables = model.init(seed=0, dtype="float64")
    with pytest.raises(ValueError, match=r"with 33 rows and batch_size=8, the epoch's last batch has 1 row.*"
                                         r"more than one value per channel"):
        pnn.fit(model, variables, da.from_array(X, chunks=10), Y, loss=CE, optimizer=pnn.optim.SGD(0.1),
                batch_size=8, progress=False)


def test_streamed_fit_with_an_empty_first_block_takes_in_memory_validation_data():
    # X.chunks[0][0] == 0 used to chunk the validation data by 0 rows: ZeroDivisionError.
    X, Y = _data(n=40)
    model = _model()
    params = model.init(seed=0, dtype="float64")
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.SGD(0.1), epochs=1, batch_size=8, shuffle=False,
                              validation_data=(X[:10], Y[:10]), progress=False)
    want, hist = pnn.fit(model, params, X, Y, **kw)
    got, hist_d = pnn.fit(model, params, da.from_array(X, chunks=((0, 25, 15), (6,))), Y, **kw)
    assert same(want, got) and np.allclose(hist_d["val_loss"], hist["val_loss"], rtol=1e-12)


def test_cluster_fit_names_global_rows_of_bad_dask_data(client, deadline):
    # a NaN read by a worker from its shard used to be reported at a row counted from the shard's start
    X, Y = _data(n=40)
    X[39, 0] = np.inf
    model = _model()
    with pytest.raises(ValueError, match=r"contains NaN or inf \(first at row 19.*in shard 1, rows 20\.\.39"):
        pnn.fit(model, model.init(seed=0, dtype="float64"), da.from_array(X, chunks=10), Y, loss=CE,
                optimizer=pnn.optim.SGD(0.1), batch_size=8, client=client, progress=False)


def test_cluster_fit_with_a_closed_client_raises_a_clear_error(deadline):
    X, Y = _data(n=40)
    with loopback_cluster(1) as cluster:
        c = distributed.Client(cluster)
        c.close()
    with pytest.raises(ValueError, match=r"the client is closed; pass an open distributed.Client"):
        pnn.fit(_model(), _model().init(dtype="float64"), X, Y, loss=CE, optimizer=pnn.optim.SGD(0.1), client=c)
