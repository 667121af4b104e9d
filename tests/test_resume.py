"""Resumable fit: checkpoints, resume, refusals, callbacks; a subprocess killed 5 times resumes bit for bit."""

from __future__ import annotations

import functools
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import portable_nn as pnn

SCE = pnn.losses.softmax_cross_entropy


def _data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    return X, np.argmax(X @ rng.standard_normal((5, 3)), axis=1)


def _model():
    return pnn.Sequential(pnn.Linear(5, 16), pnn.ReLU(), pnn.Dropout(0.2), pnn.Linear(16, 3))


def _kwargs(**extra):
    return {**dict(loss=SCE, optimizer=pnn.optim.Adam(lr=1e-2), epochs=4, batch_size=8, seed=3, progress=False),
            **extra}


def _interrupting(loss, at_step):
    """``loss`` (same name, so the checkpoint's fingerprint matches) raising KeyboardInterrupt at a step."""
    calls = []

    @functools.wraps(loss)
    def wrapped(Yp, T):
        if Yp.shape[0] > 1:
            calls.append(1)
            if len(calls) == at_step:
                raise KeyboardInterrupt
        return loss(Yp, T)

    return wrapped


def _host(tree):
    return [np.array(pnn.to_numpy(a), copy=True) for a in pnn.tree_leaves(tree)]


def _assert_same(a, b, exact=True):
    for x, y in zip(_host(a), _host(b), strict=True):
        if exact:
            assert np.array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("at_step, extra", [
    (5, {}),  # mid-epoch, step-level checkpoints
    (13, {"checkpoint_every": 4}),
    (7, {"validation_data": _data(10, seed=1), "patience": 3}),  # epoch checkpoints, with validation
])
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tb, tmp_path, at_step, extra):
    X, y = _data()
    model = _model()
    params = tb.init(model)
    expected, expected_history = pnn.fit(model, params, X, y, **_kwargs(**extra))
    path = tmp_path / "run.safetensors"
    kwargs = _kwargs(checkpoint=path, **extra)
    with pytest.raises(pnn.FitInterrupted):
        pnn.fit(model, params, X, y, **{**kwargs, "loss": _interrupting(SCE, at_step)})
    assert path.exists()
    resumed, history = pnn.fit(model, params, X, y, resume=True, **kwargs)
    exact = tb.be.name != "jax"  # JAX's compiled chunks may be cut differently: equal to rounding there
    _assert_same(resumed, expected, exact)
    assert history.keys() == expected_history.keys()
    for key in history:
        np.testing.assert_allclose(history[key], expected_history[key], rtol=0 if exact else 1e-6)
    again, _ = pnn.fit(model, params, X, y, resume=True, **kwargs)  # a finished run resumes to itself
    _assert_same(again, resumed)


def test_resume_without_a_file_starts_afresh_and_a_finished_run_is_not_retrained(tb, tmp_path):
    X, y = _data()
    model = _model()
    params = tb.init(model)
    expected, _ = pnn.fit(model, params, X, y, **_kwargs())
    path = tmp_path / "new.safetensors"
    fitted, _ = pnn.fit(model, params, X, y, **_kwargs(checkpoint=path, resume=True))
    _assert_same(fitted, expected, tb.be.name != "jax")
    steps = []
    counting = functools.wraps(SCE)(lambda Yp, T: steps.append(Yp.shape[0]) or SCE(Yp, T))
    pnn.fit(model, params, X, y, **{**_kwargs(checkpoint=path, resume=True), "loss": counting})
    assert all(rows == 1 for rows in steps)  # only fit's entry check: no training step ran


@pytest.mark.parametrize("change", ["data", "model", "optimizer", "batch_size"])
def test_resuming_another_run_is_refused_and_the_file_is_left_alone(tb, tmp_path, change):
    X, y = _data()
    model = _model()
    params = tb.init(model)
    path = tmp_path / "run.safetensors"
    pnn.fit(model, params, X, y, **_kwargs(checkpoint=path, epochs=1))
    before = path.read_bytes()
    kwargs = _kwargs(checkpoint=path, resume=True)
    if change == "data":
        X = X.copy()
        X[0, 0] += 1.0
    elif change == "model":
        model = pnn.Sequential(pnn.Linear(5, 16), pnn.Tanh(), pnn.Dropout(0.2), pnn.Linear(16, 3))
    elif change == "optimizer":
        kwargs["optimizer"] = pnn.optim.Adam(lr=2e-2)
    else:
        kwargs["batch_size"] = 16
    said = {"data": "for another X", "model": "for another model", "optimizer": "for another optimizer",
            "batch_size": "with other settings: batch_size=8 in the file, 16 in this run"}[change]
    with pytest.raises(pnn.CheckpointError, match=f"was written {said}"):
        pnn.fit(model, params, X, y, **kwargs)
    assert path.read_bytes() == before


def test_resume_needs_a_checkpoint_path_and_callbacks_need_on_epoch_end(tb):
    X, y = _data()
    model = _model()
    params = tb.init(model)
    with pytest.raises(ValueError, match="resume=True needs checkpoint="):
        pnn.fit(model, params, X, y, **_kwargs(resume=True))
    with pytest.raises(TypeError, match=r"callbacks\[0\] \(int\) has no on_epoch_end"):
        pnn.fit(model, params, X, y, **_kwargs(callbacks=[3]))
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1"):
        pnn.fit(model, params, X, y, **_kwargs(checkpoint="x.safetensors", checkpoint_every=0))


class _Log:
    """A callback: records what it sees and asks to stop after ``stop_after`` epochs."""

    def __init__(self, stop_after=None):
        self.seen, self.stop_after = [], stop_after

    def on_epoch_end(self, epoch, history, params):
        self.seen.append((epoch, len(history["loss"]), len(pnn.tree_leaves(params))))
        return self.stop_after is not None and epoch + 1 >= self.stop_after


def test_callbacks_see_every_epoch_and_can_stop(tb):
    X, y = _data()
    model = _model()
    params = tb.init(model)
    log, stopper = _Log(), _Log(stop_after=2)
    _, history = pnn.fit(model, params, X, y, **_kwargs(callbacks=[log, stopper]))
    assert len(history["loss"]) == 2
    assert log.seen == [(0, 1, 4), (1, 2, 4)] == stopper.seen


CHILD = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import portable_nn as pnn
    import portable_nn.io as io

    real_replace = os.replace
    def slow_replace(src, dst):  # a slow disk: most of a save's time is before the rename
        time.sleep(0.02)
        real_replace(src, dst)
    io.os.replace = slow_replace

    path, out = sys.argv[1], sys.argv[2]
    precision = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
    rng = np.random.default_rng(0)
    X = rng.standard_normal((384, 8))
    y = np.argmax(X @ rng.standard_normal((8, 3)), axis=1)
    model = pnn.Sequential(pnn.Linear(8, 32), pnn.ReLU(), pnn.Dropout(0.1), pnn.Linear(32, 3))
    params = model.init(seed=0, dtype="float64" if precision is None else "float32")
    kwargs = {} if path == "-" else dict(checkpoint=path, checkpoint_every=2, resume=True)
    if precision is not None:  # float16: DynamicLossScale's scale and counters are in the checkpoint too
        kwargs["precision"] = precision
    print("ready", flush=True)
    params, history = pnn.fit(model, params, X, y, loss=pnn.losses.softmax_cross_entropy,
                              optimizer=pnn.optim.Adam(1e-2), epochs=12, batch_size=16, seed=5,
                              validation_data=(X[:50], y[:50]), progress=False, **kwargs)
    pnn.save(out, {"params": params, "history": {k: np.asarray(v) for k, v in history.items()}})
""")


def _sha256(path):
    tree = pnn.load(path)
    digest = hashlib.sha256()
    for leaf in pnn.tree_leaves(tree):
        digest.update(np.ascontiguousarray(pnn.to_numpy(leaf)).tobytes())
    return digest.hexdigest()


def _start(script, ckpt, out, precision="-"):
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt), str(out), precision], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.parametrize("precision", ["-", "float16"])
def test_sigkill_five_times_then_resume_gives_bit_identical_params(tb, tmp_path, precision):
    """SIGKILL at 5 random points (most mid-save, with a slowed rename), resume each time: same sha256.

    Also in mixed precision (float16 compute, float32 master params, DynamicLossScale's state checkpointed)."""
    if tb.spec != "numpy":
        pytest.skip("the kill-and-resume test runs in the numpy session")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ckpt, out, ref = tmp_path / "run.safetensors", tmp_path / "out.safetensors", tmp_path / "ref.safetensors"
    subprocess.run([sys.executable, str(script), "-", str(ref), precision], check=True, timeout=300)
    delays = np.random.default_rng(20261130).uniform(0.1, 0.4, size=5)  # the run takes > 2.5 s
    landed = 0
    for delay in delays:
        proc = _start(script, ckpt, out, precision)
        time.sleep(float(delay))
        landed += proc.poll() is None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert landed == 5, "every kill must land while the run trains"
    # a kill between writing the temporary file and the rename leaves it behind (the checkpoint stays whole)
    assert len(list(tmp_path.glob(".tmp-*.safetensors"))) >= 1, "no kill landed mid-save"
    assert not out.exists()
    proc = _start(script, ckpt, out, precision)
    assert proc.wait(timeout=300) == 0
    assert _sha256(out) == _sha256(ref)
