"""Regression tests for defects found by breaking checkpoints, save/load, Dask and the sklearn estimators."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

import portable_nn as pnn


def _regression(tb, n=24):
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((n, 3)), rng.standard_normal((n, 2))
    return tb.asarray(X, dtype=tb.float), tb.asarray(Y, dtype=tb.float)


def test_save_to_a_folder_names_the_folder(tb, tmp_path):
    """save(folder) raised IsADirectoryError naming a temporary file '.tmp-<hex>.safetensors' in the
    folder's parent (and the move from it), not the folder the user passed nor how to fix it."""
    params = pnn.Linear(2, 3).init(seed=0, backend=tb.be, dtype=tb.float)
    with pytest.raises(IsADirectoryError, match=r"save: .* is a directory.*model\.safetensors") as e:
        pnn.save(tmp_path, params)
    assert ".tmp-" not in str(e.value)
    assert os.listdir(tmp_path) == [] and [p for p in os.listdir(tmp_path.parent) if p.startswith(".tmp-")] == []


def test_resume_with_a_partial_loss_keeps_no_memory_address(tb, tmp_path):
    """A loss given as functools.partial was fingerprinted by its repr, which holds the function's memory
    address ('<function mean_squared_error at 0x7f..>'): resuming in a new process (another address) was
    refused as 'written for another loss' although the loss was the same."""
    X, Y = _regression(tb)
    model = pnn.Sequential(pnn.Linear(3, 4), pnn.ReLU(), pnn.Linear(4, 2))
    path = tmp_path / "run.safetensors"
    loss = functools.partial(pnn.losses.mean_squared_error)
    pnn.fit(model, tb.init(model), X, Y, loss=loss, optimizer=pnn.optim.SGD(lr=0.1), epochs=1, batch_size=8,
            seed=0, checkpoint=path, progress=False)
    saved = bytes(pnn.to_numpy(pnn.load(path, backend="numpy")["fingerprint"]["loss"])).decode()
    assert "mean_squared_error" in saved and "0x" not in saved
