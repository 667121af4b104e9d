"""fit(client=): the all-reduce exchange between Dask workers (torch.distributed, gloo on loopback).

Skipped where dask, distributed or torch is not installed (the ``dask`` nox session installs them), and
on backends other than NumPy (float64 parity). The tests share the session's 2-worker loopback cluster
(tests/conftest.py); faults are made in the workers by ``_allreduce_worker._after_step`` (installed with
``set_worker_hook``), and seen by the client through ``_allreduce._after_chunk``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

import portable_nn as pnn

distributed = pytest.importorskip("distributed")
pytest.importorskip("torch.distributed")

from portable_nn.training import _allreduce as allreduce_runner  # noqa: E402
from portable_nn.training import _cluster as hub_runner  # noqa: E402

from ._dask_support import max_rel, same, set_worker_hook  # noqa: E402

CE = pnn.losses.softmax_cross_entropy


def _data(n: int = 601, d: int = 6, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, k, size=n)


def _model(dropout: float = 0.0, d: int = 6, hidden: int = 16) -> pnn.Sequential:
    layers: list[pnn.Layer] = [pnn.Linear(d, hidden), pnn.Tanh()]
    if dropout:
        layers.append(pnn.Dropout(dropout))
    return pnn.Sequential(*layers, pnn.Linear(hidden, 3))


@pytest.fixture
def client(dask_client: Any) -> Any:
    """The session's 2-worker cluster, its workers' hooks removed afterwards, both workers up again."""
    yield dask_client
    allreduce_runner._after_chunk = None
    dask_client.wait_for_workers(2, timeout=60)  # a killed worker: its nanny restarts it
    set_worker_hook(dask_client, None)


def _pids(client: Any) -> dict[str, int]:
    return client.run(os.getpid)  # type: ignore[no-any-return]


# --- exact results --------------------------------------------------------------------------------------


def test_allreduce_equals_one_process_and_repeats_bit_for_bit(client, deadline):
    """Uneven shards (300 + 301 rows), dropout, a cosine schedule, gradient clipping, accumulate=3."""
    X, Y = _data()
    model = _model(dropout=0.3)
    params = model.init(seed=1, dtype="float64")
    opt = pnn.optim.Adam(pnn.schedules.cosine(0.02, total_steps=20, warmup=3), clip_norm=0.5)
    kw: dict[str, Any] = dict(loss=CE, optimizer=opt, epochs=2, batch_size=64, seed=5, progress=False)
    want, hist = pnn.fit(model, params, X, Y, **kw)
    got, hist_a = pnn.fit(model, params, X, Y, client=client, **kw)
    again, hist_b = pnn.fit(model, params, X, Y, client=client, **kw)
    acc, _ = pnn.fit(model, params, X, Y, client=client, accumulate=3, **kw)
    assert max_rel(want, got) <= 1e-12 and max_rel(want, acc) <= 1e-12
    assert same(got, again) and hist_a == hist_b  # a fixed order of the sums: bit for bit
    assert np.allclose(hist_a["loss"], hist["loss"], rtol=1e-12) and hist_a["accuracy"] == hist["accuracy"]
    assert hist_a["lr"] == hist["lr"]


def test_allreduce_with_validation_patience_reduce_lr_and_sum_loss(client, deadline):
    """One chunk per epoch: the driver's validation, early stopping and reduce_lr (a learning-rate scale
    sent alone between epochs) see the same params as in one process."""
    X, Y = _data()
    T = np.random.default_rng(3).standard_normal((601, 3))
    model = _model()
    params = model.init(seed=2, dtype="float64")
    kw: dict[str, Any] = dict(optimizer=pnn.optim.SGD(0.05, momentum=0.9), epochs=4, batch_size=50, seed=1,
                              progress=False, validation_data=(X[:80], Y[:80]), patience=3,
                              reduce_lr=pnn.schedules.ReduceOnPlateau(factor=0.5, patience=1), loss=CE)
    want, hist = pnn.fit(model, params, X, Y, **kw)
    got, hist_c = pnn.fit(model, params, X, Y, client=client, **kw)
    assert max_rel(want, got) <= 1e-12 and hist_c["lr"] == hist["lr"] and len(set(hist["lr"])) > 1
    assert np.allclose(hist_c["val_loss"], hist["val_loss"], rtol=1e-12)
    kw.update(loss=pnn.losses.sum_squared_error, optimizer=pnn.optim.SGD(1e-4), validation_data=None,
              patience=None, reduce_lr=None, shuffle=False)
    want, _ = pnn.fit(model, params, X, T, **kw)
    got, _ = pnn.fit(model, params, X, T, client=client, **kw)
    assert max_rel(want, got) <= 1e-12


def test_allreduce_on_three_workers_with_batches_that_miss_a_worker(client, deadline):
    """3 workers, shards of 100, 100 and 101 rows; unshuffled batches of 40 rows often lie in one shard:
    the members without rows add zeros and still draw the dropout masks of the whole batch."""
    cluster = client.cluster
    cluster.scale(3)
    try:
        client.wait_for_workers(3, timeout=60)
        X, Y = _data(n=301)
        model = _model(dropout=0.2)
        params = model.init(seed=4, dtype="float64")
        for shuffle in (False, True):
            kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.Adam(0.01, clip_value=0.05), epochs=2,
                                      batch_size=40, seed=3, shuffle=shuffle, progress=False)
            want, hist = pnn.fit(model, params, X, Y, **kw)
            got, hist_c = pnn.fit(model, params, X, Y, client=client, accumulate=2, **kw)
            assert max_rel(want, got) <= 1e-12, shuffle
            assert np.allclose(hist_c["loss"], hist["loss"], rtol=1e-12)
        again, _ = pnn.fit(model, params, X, Y, client=client, accumulate=2, **kw)
        assert same(got, again)
    finally:
        cluster.scale(2)
        while len(client.scheduler_info(n_workers=-1)["workers"]) > 2:
            time.sleep(0.1)


def test_allreduce_with_torch_params_on_the_workers(client, deadline):
    torch = pytest.importorskip("torch")
    be = pnn.get_backend("torch")
    X, Y = _data()
    model = _model(dropout=0.1)
    params = model.init(seed=1, backend=be, dtype="float64")
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.Adam(0.01), epochs=1, batch_size=64, seed=2,
                              progress=False)
    want, _ = pnn.fit(model, params, be.asarray(X), be.asarray(Y), **kw)
    got, _ = pnn.fit(model, params, X, Y, client=client, **kw)
    assert all(isinstance(a, torch.Tensor) for a in pnn.tree_leaves(got))
    assert max_rel(want, got) <= 1e-12


# --- the client's work does not grow with the model ----------------------------------------------------------


_CPU_CHILD = r"""
import json, sys, time
import dask
import numpy as np
import portable_nn as pnn
from distributed import Client

# Dask's own ticking while the client waits (an event-loop monitor every 20 ms, scheduler info every 2 s)
# costs CPU in proportion to wall time, whatever the fit does: slowed down, it stays out of the measure
dask.config.set({"distributed.admin.tick.interval": "1s", "distributed.client.scheduler-info-interval": "60s"})
client = Client(sys.argv[1], timeout=30)
rng = np.random.default_rng(0)
X, Y = rng.standard_normal((512, 16)), rng.integers(0, 3, size=512)
kw = dict(loss=pnn.losses.softmax_cross_entropy, optimizer=pnn.optim.SGD(0.01), batch_size=16, progress=False)
models = {}
for hidden in (512, 53_000):  # 10k and 1M params
    model = pnn.Sequential(pnn.Linear(16, hidden), pnn.Tanh(), pnn.Linear(hidden, 3))
    models[hidden] = (model, model.init(seed=0, dtype="float32"))
out = {}
for exchange, rows, repeats in (("allreduce", 128, 7), ("hub", 128, 1)):
    dp = pnn.DataParallel(client, exchange=exchange)
    best = {}
    for model, params in models.values():
        pnn.fit(model, params, X[:32], Y[:32], client=dp, epochs=1, **kw)  # warm up: imports, first steps
    for _ in range(repeats):  # the least of a few, alternating: noise from other processes only adds
        for model, params in models.values():
            size = sum(int(np.prod(a.shape)) for a in pnn.tree_leaves(params))
            start = time.process_time()
            pnn.fit(model, params, X[:rows], Y[:rows], client=dp, epochs=1, **kw)
            cpu = (time.process_time() - start) / (rows // 16)
            best[size] = min(best.get(size, cpu), cpu)
    out[exchange] = best
out["client_imported_torch"] = "torch" in sys.modules  # the workers' collective; the client needs none of it
print(json.dumps(out))
"""


def test_client_cpu_per_step_is_flat_from_10k_to_1m_params(client, deadline):
    """The all-reduce client's CPU per step (``time.process_time()`` around a fit, over its 8 steps; the
    least of seven) is the same for a 1M-param model as for a 10k-param one: it sends nothing per step, and
    the params once per fit (to one worker, and back at the end: about 5 ms for the 1M params' 4 MB).
    The hub's grows with the model (it moves and adds every gradient): the test tells them apart. Measured
    in a client process of its own (the LocalCluster's scheduler and nannies run in this one), which never
    imports torch."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(pnn.__file__)),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _CPU_CHILD, client.scheduler.address], capture_output=True,
                          text=True, env=env, timeout=110)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cpu = json.loads(proc.stdout.strip().splitlines()[-1])
    assert cpu.pop("client_imported_torch") is False
    for exchange, per_size in cpu.items():
        (small, c_small), (large, c_large) = sorted((int(k), v) for k, v in per_size.items())
        print(f"client CPU per step, {exchange}: {c_small * 1e3:.3f} ms ({small} params), {c_large * 1e3:.3f} ms "
              f"({large} params)")
        assert small < 12_000 and large > 1_000_000
        if exchange == "allreduce":
            assert c_large / c_small < 1.5, cpu
        else:
            assert c_large / c_small > 3, cpu


# --- faults -------------------------------------------------------------------------------------------------


def test_killed_worker_mid_fit_continues_on_the_others(client, deadline):
    X, Y = _data()
    model = _model(dropout=0.2)
    params = model.init(seed=1, dtype="float64")
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.Adam(0.01), epochs=2, batch_size=64, seed=2,
                              progress=False)
    want, hist = pnn.fit(model, params, X, Y, **kw)
    victim = sorted(_pids(client))[1]
    set_worker_hook(client, lambda k, member: k == 5 and os.kill(os.getpid(), signal.SIGKILL), workers=[victim])
    with pytest.warns(RuntimeWarning, match=r"lost worker.*moving shard\(s\) \[1\].*continuing from step 5"):
        got, hist_c = pnn.fit(model, params, X, Y, client=pnn.DataParallel(client, timeout=20), **kw)
    assert max_rel(want, got) <= 1e-12
    assert np.allclose(hist_c["loss"], hist["loss"], rtol=1e-12)


def test_hung_worker_is_treated_as_lost_after_the_timeout(client, deadline):
    X, Y = _data()
    model = _model()
    params = model.init(seed=1, dtype="float64")
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.SGD(0.1), epochs=1, batch_size=64, progress=False)
    want, _ = pnn.fit(model, params, X, Y, **kw)
    victim = sorted(_pids(client))[0]

    def hang(k: int, member: Any) -> None:
        if k == 3:
            from portable_nn.training import _allreduce_worker

            _allreduce_worker._test_release = release = threading.Event()  # type: ignore[attr-defined]
            release.wait(60)

    set_worker_hook(client, hang, workers=[victim])
    start = time.monotonic()
    try:
        with pytest.warns(RuntimeWarning, match=r"lost worker\(s\) " + victim + r"; moving shard\(s\) \[0\]"):
            got, _ = pnn.fit(model, params, X, Y, client=pnn.DataParallel(client, timeout=3.0), **kw)
    finally:
        def release() -> None:
            from portable_nn.training import _allreduce_worker

            getattr(_allreduce_worker, "_test_release", threading.Event()).set()

        client.run(release, workers=[victim])
    waited = time.monotonic() - start
    assert max_rel(want, got) <= 1e-12
    assert waited >= 6.0  # the survivor waited one timeout in its sum, the client one more


def test_ctrl_c_stops_every_worker_after_the_same_step(client, deadline, monkeypatch):
    """Ctrl-C reaches the workers mid-chunk; they stop together after the next step: FitInterrupted carries
    that step's params, as the hub's (one step at a time through the client) after as many steps."""
    X, Y = _data(n=600)
    model = _model()
    params = model.init(seed=1, dtype="float64")
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.SGD(0.1), batch_size=100, epochs=3, progress=False)
    monkeypatch.setattr(hub_runner, "_after_step", lambda k: k == 8 and os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(pnn.FitInterrupted) as want:
        pnn.fit(model, params, X, Y, client=pnn.DataParallel(client, exchange="hub"), **kw)
    monkeypatch.setattr(hub_runner, "_after_step", None)
    me = os.getpid()

    def ctrl_c(k: int, member: Any) -> None:  # SIGINT to the client after step 7; wait until it reaches us
        if k == 7:
            os.kill(me, signal.SIGINT)
            deadline = time.monotonic() + 30
            while not member.stop_requested and time.monotonic() < deadline:
                time.sleep(0.01)

    set_worker_hook(client, ctrl_c, workers=[sorted(_pids(client))[0]])
    with pytest.raises(pnn.FitInterrupted) as stop:
        pnn.fit(model, params, X, Y, client=client, **kw)
    assert max_rel(want.value.params, stop.value.params) <= 1e-12  # after step 8
    got_h, want_h = stop.value.history, want.value.history
    assert len(got_h["loss"]) == 1 and got_h.keys() == want_h.keys()
    assert all(np.allclose(got_h[k], want_h[k], rtol=1e-12) for k in want_h)


def test_lost_client_raises_cluster_error_with_the_last_params_it_received(client, deadline, monkeypatch):
    X, Y = _data(n=600)
    model = _model()
    params = model.init(seed=1, dtype="float64")
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.SGD(0.1), batch_size=100, progress=False)
    one, _ = pnn.fit(model, params, X, Y, epochs=1, **kw)
    other = distributed.Client(client.scheduler.address)
    monkeypatch.setattr(allreduce_runner, "_after_chunk", lambda r: r.steps_done == 6 and other.close())
    with pytest.raises(pnn.ClusterError, match="client is closed") as err:
        pnn.fit(model, params, X, Y, client=other, epochs=3, validation_data=(X[:50], Y[:50]), **kw)
    assert max_rel(one, err.value.params) <= 1e-12 and (err.value.epoch, err.value.step) == (1, 0)


def test_nan_raises_naming_the_step_with_the_params_before_it(client, deadline):
    rng = np.random.default_rng(0)
    X, T = rng.standard_normal((600, 6)) * 10, rng.standard_normal((600, 3))
    model = pnn.Sequential(pnn.Linear(6, 3))
    params = model.init(seed=1, dtype="float64")
    kw: dict[str, Any] = dict(loss=pnn.losses.mean_squared_error, optimizer=pnn.optim.SGD(100.0), batch_size=50,
                              epochs=5, progress=False)  # diverges: overflows in epoch 3
    with pytest.raises(pnn.NonFiniteError) as want, np.errstate(all="ignore"):
        pnn.fit(model, params, X, T, **kw)
    with pytest.raises(pnn.NonFiniteError) as got, np.errstate(all="ignore"):
        pnn.fit(model, params, X, T, client=client, **kw)
    assert (got.value.epoch, got.value.step) == (want.value.epoch, want.value.step) == (3, 4)
    assert "at epoch 3, step 4" in str(got.value)
    assert max_rel(want.value.params, got.value.params) <= 1e-12
    with pytest.warns(RuntimeWarning, match="NaN/inf"), np.errstate(all="ignore"):
        stopped, _ = pnn.fit(model, params, X, T, client=client, on_nonfinite="stop", **kw)
    assert max_rel(want.value.params, stopped) <= 1e-12


def test_replicas_that_drift_apart_raise(client, deadline):
    X, Y = _data()
    model = _model()
    params = model.init(seed=1, dtype="float64")

    def nudge(k: int, member: Any) -> None:  # one replica's params change by one rounding step
        if k == 3:
            member.cur = replace(member.cur, params=pnn.tree_map(lambda a: a * (1 + 2**-52), member.cur.params))

    set_worker_hook(client, nudge, workers=[sorted(_pids(client))[1]])
    with pytest.raises(pnn.ClusterError, match="replicas differ after step 10"):
        pnn.fit(model, params, X, Y, loss=CE, optimizer=pnn.optim.SGD(0.1), batch_size=64, epochs=2,
                progress=False, client=client)


def test_data_parallel_arguments_are_checked():
    with pytest.raises(ValueError, match="exchange must be 'allreduce'.*or 'hub'.*got 'ring'"):
        pnn.DataParallel(None, exchange="ring")
    with pytest.raises(ValueError, match="timeout"):
        pnn.DataParallel(None, timeout=0)
    with pytest.raises(TypeError, match="client must be a distributed.Client"):
        pnn.fit(_model(), _model().init(dtype="float64"), *_data(n=20), loss=CE, optimizer=pnn.optim.SGD(0.1),
                client=pnn.DataParallel("x"))


def test_checkpoint_every_pauses_the_workers_and_resume_equals_one_run(client, deadline, tmp_path):
    X, Y = _data()
    model = _model(dropout=0.1)
    params = model.init(seed=1, dtype="float64")
    kw: dict[str, Any] = dict(loss=CE, optimizer=pnn.optim.Adam(0.01), batch_size=64, seed=2, progress=False)
    want, hist = pnn.fit(model, params, X, Y, epochs=3, **kw)
    path = tmp_path / "run.safetensors"
    saves: list[int] = []
    allreduce_runner._after_chunk = lambda r: saves.append(r.steps_done)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pnn.fit(model, params, X, Y, epochs=2, client=client, checkpoint=path, checkpoint_every=7, **kw)
    assert saves == [7, 10, 14, 20], saves  # pauses every 7 steps, and each chunk's (epoch's) end
    got, hist_c = pnn.fit(model, params, X, Y, epochs=3, client=client, checkpoint=path, resume=True, **kw)
    assert max_rel(want, got) <= 1e-12
    assert np.allclose(hist_c["loss"], hist["loss"], rtol=1e-12)


def test_handoff_maps_large_host_trees_and_leaves_no_file():
    from portable_nn.training._handoff import Parcel, pack, unpack

    tree = ([np.arange(300_000, dtype=np.float32).reshape(1000, 300), np.zeros((0, 3)), np.ones((), np.int64),
             np.arange(9, dtype=np.float16)], {"count": 3, "lr_scale": 0.5, "none": None})
    assert pack(tree, min_bytes=10**9) is tree  # small trees go through Dask as they are
    parcel = pack(tree)
    if not isinstance(parcel, Parcel):
        pytest.skip("no /dev/shm here: trees go through Dask")
    assert os.path.exists(parcel.path)
    got = unpack(parcel)
    assert not os.path.exists(parcel.path) and got[1] == tree[1]
    for a, b in zip(tree[0], got[0], strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    got[0][0][0, 0] = -1.0  # writable, copy-on-write: the caller may own it
    assert tree[0][0][0, 0] == 0.0 and unpack(7) == 7


@pytest.mark.filterwarnings("ignore:overflow", "ignore:invalid")
@pytest.mark.parametrize("exchange", ["allreduce", "hub"])
def test_mixed_precision_on_the_cluster_follows_one_process(client: Any, deadline: Any, exchange: str) -> None:
    """precision="float16" with client=: float32 master params and DynamicLossScale's scale as in one process, the
    params within float16 rounding of it; steps whose grads overflow are skipped on every replica alike (the
    workers' float16 grads of their rows overflow where one process's may not: the skips are compared where every
    step overflows on both)."""
    X, Y = _data(200)
    model = _model()
    params = model.init(seed=1, dtype="float32")
    dp = pnn.DataParallel(client, exchange=exchange)
    kw: dict[str, Any] = dict(loss=CE, epochs=3, batch_size=40, seed=3, precision="float16", progress=False)
    one, h_one = pnn.fit(model, params, X, Y, optimizer=pnn.optim.Adam(1e-2), **kw)  # wrapped: scale 2**16
    on, h_on = pnn.fit(model, params, X, Y, optimizer=pnn.optim.Adam(1e-2), client=dp, **kw)
    assert h_on["loss_scale"] == h_one["loss_scale"] and h_on["skipped_steps"] == h_one["skipped_steps"]
    assert all(str(a.dtype) == "float32" for a in pnn.tree_leaves(on))
    assert max_rel(one, on) <= 5e-3 and h_one["loss"][-1] < h_one["loss"][0]
    huge = pnn.optim.DynamicLossScale(pnn.optim.Adam(1e-2), init_scale=2.0**40)
    kw["epochs"] = 1
    skipped, h_skip = pnn.fit(model, params, X, Y, optimizer=huge, client=dp, **kw)
    assert h_skip["skipped_steps"] == [5.0] and h_skip["loss_scale"] == [2.0**35]
    assert same(skipped, params)  # every step skipped: the params as they were, no NonFiniteError
