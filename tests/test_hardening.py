"""Hardening: checkpoints survive kills and fuzzing; training is deterministic and interruptible."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import portable_nn as pnn


def _model():
    return pnn.Sequential(pnn.Linear(4, 6), pnn.Tanh(), pnn.Dropout(0.25), pnn.Linear(6, 2))


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "m.safetensors"
    pnn.save(path, _model().init(seed=0, backend="numpy", dtype="float32"))
    return path.read_bytes()


FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _load_bytes(tmp_path, data: bytes):
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(data)
    try:
        return pnn.load(path, backend="numpy")
    finally:
        assert path.read_bytes() == data  # loading never modifies the file


@FUZZ
@given(data=st.binary(max_size=512))
def test_fuzz_random_bytes_only_raise_checkpoint_error(tmp_path, data):
    with pytest.raises(pnn.CheckpointError):
        _load_bytes(tmp_path, data)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=10_000))
def test_fuzz_truncation_only_raises_checkpoint_error(tmp_path, checkpoint_bytes, cut):
    cut = cut % len(checkpoint_bytes)
    with pytest.raises(pnn.CheckpointError):
        _load_bytes(tmp_path, checkpoint_bytes[:cut])


@FUZZ
@given(position=st.integers(min_value=0, max_value=10_000), bit=st.integers(min_value=0, max_value=7))
def test_fuzz_bit_flips_load_or_raise_checkpoint_error(tmp_path, checkpoint_bytes, position, bit):
    data = bytearray(checkpoint_bytes)
    data[position % len(data)] ^= 1 << bit
    try:
        params = _load_bytes(tmp_path, bytes(data))
    except pnn.CheckpointError:
        return
    # a flip inside tensor data loads (safetensors has no checksum) but keeps the structure
    assert len(params) == 4 and set(params[0]) == {"W", "b"}


_SAVER = textwrap.dedent(
    """
    import sys, numpy as np, portable_nn as pnn
    path = sys.argv[1]
    big = [{"W": np.full((512, 1024), float(v), dtype=np.float32)} for v in range(8)]
    pnn.save(path, [{"W": a["W"] * 0 + 1.0} for a in big])
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        pnn.save(path, [{"W": a["W"] * 0 + float(2 + i % 2)} for a in big])
    """
)


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.3])
def test_killing_the_process_mid_save_leaves_a_loadable_checkpoint(tmp_path, delay):
    path = tmp_path / "ckpt.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    params = pnn.load(path, backend="numpy")  # intact: either a whole old or a whole new version
    values = {float(np.unique(p["W"])[0]) for p in params}
    assert len(values) == 1 and values <= {1.0, 2.0, 3.0}
    assert all(np.unique(p["W"]).size == 1 for p in params)


_FITTER = textwrap.dedent(
    """
    import hashlib, sys, numpy as np, portable_nn as pnn
    be = pnn.get_backend(sys.argv[1])
    model = pnn.Sequential(pnn.Linear(4, 6), pnn.Tanh(), pnn.Dropout(0.25), pnn.Linear(6, 2))
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((50, 4)), rng.integers(0, 2, 50)
    params, _ = pnn.fit(model, model.init(seed=3, backend=be), X, y, loss=pnn.losses.softmax_cross_entropy,
                        optimizer=pnn.optim.Adam(), epochs=3, batch_size=8, seed=5, progress=False)
    h = hashlib.sha256()
    for a in pnn.tree_leaves(params):
        h.update(np.ascontiguousarray(pnn.to_numpy(a)).tobytes())
    print(h.hexdigest())
    """
)


def test_same_seed_is_bit_identical_across_processes(tb):
    if tb.readonly:
        pytest.skip("same as numpy")
    runs = {
        subprocess.run([sys.executable, "-c", _FITTER, tb.spec], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    assert len(runs) == 1 and len(next(iter(runs)).strip()) == 64


def test_keyboard_interrupt_leaves_last_completed_steps_params(tb):
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((10, 4)), rng.standard_normal((10, 2))
    model = pnn.Sequential(pnn.Linear(4, 2))
    params = tb.init(model, seed=1)
    # compile=False: the loss below simulates Ctrl-C from Python, which jax.jit would trace only once
    kwargs = dict(optimizer=pnn.optim.SGD(lr=0.1), batch_size=10, shuffle=False, progress=False, compile=False)
    expected, _ = pnn.fit(model, params, X, Y, loss=pnn.losses.mean_squared_error, epochs=3, **kwargs)
    calls = []

    def interrupting_loss(Yp, T):
        if Yp.shape[0] == 1:  # fit's entry check runs the model and loss on one row
            return pnn.losses.mean_squared_error(Yp, T)
        calls.append(1)
        if len(calls) == 4:  # Ctrl-C during the 4th step: 3 steps completed
            raise KeyboardInterrupt
        return pnn.losses.mean_squared_error(Yp, T)

    with pytest.raises(pnn.FitInterrupted) as info:
        pnn.fit(model, params, X, Y, loss=interrupting_loss, epochs=10, **kwargs)
    assert isinstance(info.value, KeyboardInterrupt)
    assert len(info.value.history["loss"]) == 3
    for a, b in zip(pnn.tree_leaves(expected), pnn.tree_leaves(info.value.params), strict=True):
        assert np.array_equal(pnn.to_numpy(a), pnn.to_numpy(b))



def _interrupted_fit(tb, at_call, interrupt):
    """fit on 3 batches per epoch whose loss calls ``interrupt()`` on call ``at_call``; and the params after k steps."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((30, 4)), rng.standard_normal((30, 2))
    model = pnn.Sequential(pnn.Linear(4, 3), pnn.ReLU(), pnn.Linear(3, 2))
    params = tb.init(model, seed=1)
    kwargs = dict(optimizer=pnn.optim.SGD(lr=0.1, momentum=0.5), batch_size=10, shuffle=False, progress=False,
                  compile=False)
    calls = []

    def loss(Yp, T):
        if Yp.shape[0] == 1:  # fit's entry check runs the model and loss on one row
            return pnn.losses.mean_squared_error(Yp, T)
        calls.append(1)
        if len(calls) == at_call:
            interrupt()
        return pnn.losses.mean_squared_error(Yp, T)

    with pytest.raises(pnn.FitInterrupted) as info:
        pnn.fit(model, params, X, Y, loss=loss, epochs=10, **kwargs)
    step = pnn.compile_step(model, pnn.losses.mean_squared_error, kwargs["optimizer"], compile=False)
    p, s = params, kwargs["optimizer"].init(params)
    Xb, Yb = tb.asarray(X, dtype=tb.float), tb.asarray(Y, dtype=tb.float)
    after = []
    for i in range(0, 30 * 2, 10):  # two epochs of 3 steps
        p, s, _ = step(p, s, Xb[i % 30:i % 30 + 10, ...], Yb[i % 30:i % 30 + 10, ...])
        after.append(p)
    return info.value, after


def _raise():
    raise KeyboardInterrupt


def test_keyboard_interrupt_mid_epoch_keeps_the_last_completed_step(tb):
    """A KeyboardInterrupt inside step 5 (the second epoch's second step) leaves the params of step 4."""
    err, after = _interrupted_fit(tb, 5, _raise)
    assert len(err.history["loss"]) == 1
    for a, b in zip(pnn.tree_leaves(after[3]), pnn.tree_leaves(err.params), strict=True):
        assert np.array_equal(pnn.to_numpy(a), pnn.to_numpy(b))


def test_ctrl_c_signal_finishes_the_step_then_stops(tb):
    """A real SIGINT inside step 5 is held until step 5 (forward, backward, update) is complete."""
    import os
    import signal

    err, after = _interrupted_fit(tb, 5, lambda: os.kill(os.getpid(), signal.SIGINT))
    for a, b in zip(pnn.tree_leaves(after[4]), pnn.tree_leaves(err.params), strict=True):
        assert np.array_equal(pnn.to_numpy(a), pnn.to_numpy(b))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's handler is back


def test_fit_in_a_worker_thread_leaves_signal_handling_alone(tb):
    """Only the main thread can install signal handlers: fit elsewhere trains normally and touches none."""
    import signal
    import threading

    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((20, 4)), rng.standard_normal((20, 2))
    model = pnn.Sequential(pnn.Linear(4, 2))
    params = tb.init(model, seed=1)
    kwargs = dict(loss=pnn.losses.mean_squared_error, optimizer=pnn.optim.SGD(lr=0.1), epochs=2, batch_size=5,
                  shuffle=False, progress=False, compile=False)
    out = {}
    thread = threading.Thread(target=lambda: out.update(result=pnn.fit(model, params, X, Y, **kwargs)))
    thread.start()
    thread.join()
    expected, _ = pnn.fit(model, params, X, Y, **kwargs)
    for a, b in zip(pnn.tree_leaves(expected), pnn.tree_leaves(out["result"][0]), strict=True):
        assert np.array_equal(pnn.to_numpy(a), pnn.to_numpy(b))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_load_into_another_architecture_names_the_first_mismatch(tb, tmp_path):
    path = tmp_path / "m.safetensors"
    params = tb.init(_model(), seed=0, dtype="float32")
    pnn.save(path, params)
    before = path.read_bytes()
    assert len(pnn.load(path, backend=tb.be, like=params)) == 4  # same architecture loads
    wider = pnn.Sequential(pnn.Linear(4, 7), pnn.Tanh(), pnn.Dropout(0.25), pnn.Linear(7, 2))
    with pytest.raises(pnn.CheckpointError, match=r"param '0\.W' is float32\[4, 6\] in the file but float32\[4, 7\]"):
        pnn.load(path, backend=tb.be, like=tb.init(wider, dtype="float32"))
    deeper = pnn.Sequential(pnn.Linear(4, 6), pnn.Tanh(), pnn.Linear(6, 2), pnn.Linear(2, 2))
    with pytest.raises(pnn.CheckpointError, match=r"param '2\.W' is missing from the file"):
        pnn.load(path, backend=tb.be, like=tb.init(deeper, dtype="float32"))
    if "float64" in tb.dtypes:
        with pytest.raises(pnn.CheckpointError, match="float32.*float64"):
            pnn.load(path, backend=tb.be, like=tb.init(_model(), dtype="float64"))
    assert path.read_bytes() == before


@pytest.mark.parametrize("where", ["layer", "loss", "optimizer", "fit"])
def test_arrays_on_two_fake_devices_always_raise(where):
    """array_api_strict's device1 and device2 stand in for two GPUs: mixing them never converts silently."""
    pytest.importorskip("array_api_strict")
    d1, d2 = pnn.get_backend("array_api_strict:device1"), pnn.get_backend("array_api_strict:device2")
    model = pnn.Sequential(pnn.Linear(3, 2))
    params = model.init(seed=0, backend=d1, dtype="float32")
    X2 = d2.asarray(np.ones((4, 3)), dtype="float32")
    T2 = d2.asarray(np.ones((4, 2)), dtype="float32")
    with pytest.raises(ValueError, match="device"):
        if where == "layer":
            model.apply(params, X2)
        elif where == "loss":
            pnn.losses.mean_squared_error(d1.asarray(np.ones((4, 2)), dtype="float32"), T2)
        elif where == "optimizer":
            opt = pnn.optim.SGD(lr=0.1)
            opt.step(params, pnn.to_backend(params, d2), opt.init(params))
        else:
            pnn.fit(model, params, X2, T2, loss=pnn.losses.mean_squared_error, optimizer=pnn.optim.SGD(),
                    epochs=1, progress=False)
