"""The backend table: a new backend is one adapter module plus one line in ``ADAPTERS``."""

from __future__ import annotations

import numpy as np

import portable_nn as pnn
from portable_nn.backends import ADAPTERS


def test_a_toy_backend_is_one_module_plus_one_table_line(monkeypatch):
    monkeypatch.setitem(ADAPTERS, "toy", "tests._toy_backend")  # the one registry line
    assert pnn.available_backends()[-1] == "toy"
    be = pnn.get_backend("toy")
    assert be.name == "toy" and be.device_label == "cpu" and not be.is_gpu
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 4)), rng.integers(0, 3, 32)
    model = pnn.Sequential(pnn.Linear(4, 8), pnn.ReLU(), pnn.Linear(8, 3))
    runs = {}
    for name in ("toy", "numpy"):
        params = model.init(seed=0, backend=name, dtype="float64")
        runs[name], _ = pnn.fit(model, params, X, y, loss=pnn.losses.softmax_cross_entropy,
                                optimizer=pnn.optim.SGD(0.1), epochs=2, batch_size=8, progress=False)
    for a, b in zip(pnn.tree_leaves(runs["toy"]), pnn.tree_leaves(runs["numpy"]), strict=True):
        assert np.array_equal(pnn.to_numpy(a), pnn.to_numpy(b))
    with pnn.use_backend("toy") as toy:
        assert pnn.get_backend() is toy


def test_every_backend_in_the_table_has_an_adapter_named_after_it():
    for name in ADAPTERS:
        adapter = pnn.backends.adapter(name)
        assert adapter.name == name and adapter.install_hint
