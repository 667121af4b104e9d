"""Backend selection: names, auto, default (ContextVar), env var, conversions."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import portable_nn as pnn


def test_available_backends_lists_numpy_first_and_only_known_names():
    names = pnn.available_backends()
    assert names[0] == "numpy"
    assert set(names) <= {"numpy", "cupy", "torch", "jax", "array_api_strict"}


def test_auto_never_fails_without_cupy():
    be = pnn.get_backend("auto")
    assert be.name in ("numpy", "cupy")
    if "cupy" not in pnn.available_backends():
        assert be.name == "numpy" and not be.is_gpu


def test_name_device_spec_string():
    pytest.importorskip("array_api_strict")
    be = pnn.get_backend("array_api_strict:device1")
    assert be.name == "array_api_strict" and "device1" in repr(be.device)
    assert pnn.get_backend("array_api_strict", device="device1") == be


def test_use_backend_is_scoped_and_restores(tb):
    outer = pnn.get_backend()
    with pnn.use_backend(tb.be) as be:
        assert be == tb.be and pnn.get_backend() == tb.be
        params = pnn.Linear(2, 3).init(seed=0)
        assert pnn.namespace(params["W"]) is pnn.namespace(tb.be.asarray(np.zeros(1), dtype="float32"))
    assert pnn.get_backend() == outer


def test_use_backend_does_not_leak_into_other_threads(tb):
    seen = []
    with pnn.use_backend(tb.be):
        t = threading.Thread(target=lambda: seen.append(pnn.get_backend().name))
        t.start()
        t.join()
    assert seen == ["numpy"]


def test_set_backend_changes_the_default():
    import contextvars

    def inner():
        pnn.set_backend("numpy")
        return pnn.get_backend()

    assert contextvars.copy_context().run(inner).name == "numpy"


def test_env_var_sets_default_at_import():
    pytest.importorskip("array_api_strict")
    code = "import portable_nn as p; print(p.get_backend().name, p.Linear(2, 2).init()['W'].__class__.__module__)"
    env = {**os.environ, "PORTABLE_NN_BACKEND": "array_api_strict"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "array_api_strict"
    assert out.stdout.split()[1].startswith("array_api_strict")


def test_asarray_to_numpy_round_trip_and_dtype(tb):
    data = np.arange(6.0).reshape(2, 3)
    for dtype in tb.dtypes:
        a = tb.be.asarray(data, dtype=dtype)
        assert a.dtype == tb.be.dtype(dtype)
        back = tb.be.to_numpy(a)
        assert isinstance(back, np.ndarray) and back.dtype == np.dtype(dtype)
        assert np.array_equal(back, data)
    labels = tb.be.asarray(np.array([0, 2, 1]))
    assert tb.be.xp.isdtype(labels.dtype, "integral")


def test_synchronize_and_is_gpu(tb):
    tb.be.synchronize()  # must not fail on CPU backends
    assert tb.be.is_gpu == (tb.be.name == "cupy" or "cuda" in str(tb.be.device) or "gpu" in str(tb.be.device).lower())


def test_init_dtype_and_device(tb):
    import array_api_compat

    model = pnn.Sequential(pnn.Linear(3, 4), pnn.ReLU(), pnn.LayerNorm(4))
    for dtype in tb.dtypes:
        params = model.init(seed=0, backend=tb.be, dtype=dtype)
        for leaf in pnn.tree_leaves(params):
            assert leaf.dtype == tb.be.dtype(dtype)
            assert array_api_compat.device(leaf) == tb.be.device


def test_default_dtype_is_float32(tb):
    params = pnn.Linear(2, 2).init(backend=tb.be)
    assert params["W"].dtype == tb.be.dtype("float32")
