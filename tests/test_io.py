"""save / load / to_backend round trips."""

from __future__ import annotations

import numpy as np
import pytest

import portable_nn as pnn


def _model():
    return pnn.Sequential(pnn.Linear(4, 8), pnn.ReLU(), pnn.LayerNorm(8), pnn.Linear(8, 3, bias=False))


def test_round_trip_on_the_same_backend(tb, tmp_path):
    params = tb.init(_model(), seed=3)
    path = tmp_path / "model.safetensors"
    pnn.save(path, params)
    loaded = pnn.load(path, backend=tb.be)
    assert pnn.tree_map(lambda a: None, loaded) == pnn.tree_map(lambda a: None, params)
    for (p1, a), (p2, b) in zip(pnn.tree_paths(params), pnn.tree_paths(loaded), strict=True):
        assert p1 == p2
        assert b.dtype == a.dtype
        assert np.array_equal(pnn.to_numpy(a), pnn.to_numpy(b))
    X = tb.asarray(np.random.default_rng(0).standard_normal((5, 4)), dtype=tb.float)
    assert np.array_equal(
        pnn.to_numpy(pnn.predict(_model(), params, X)), pnn.to_numpy(pnn.predict(_model(), loaded, X))
    )


def test_file_from_this_backend_loads_on_numpy_and_back(tb, tmp_path):
    params = tb.init(_model(), seed=5)
    pnn.save(tmp_path / "a.safetensors", params)
    on_numpy = pnn.load(tmp_path / "a.safetensors", backend="numpy")
    assert all(isinstance(a, np.ndarray) for a in pnn.tree_leaves(on_numpy))
    pnn.save(tmp_path / "b.safetensors", on_numpy)
    back = pnn.load(tmp_path / "b.safetensors", backend=tb.be)
    for a, b in zip(pnn.tree_leaves(params), pnn.tree_leaves(back), strict=True):
        assert np.array_equal(pnn.to_numpy(a), pnn.to_numpy(b))
        assert pnn.namespace(b) is pnn.namespace(a)


def test_load_with_dtype_casts(tb, tmp_path):
    params = _model().init(seed=1, backend="numpy", dtype="float64")
    pnn.save(tmp_path / "m.safetensors", params)
    loaded = pnn.load(tmp_path / "m.safetensors", backend=tb.be, dtype="float32")
    assert all(a.dtype == tb.be.dtype("float32") for a in pnn.tree_leaves(loaded))


def test_to_backend_moves_a_whole_tree(tb):
    params = _model().init(seed=2, backend="numpy", dtype="float32")
    moved = pnn.to_backend(params, tb.be)
    for a, b in zip(pnn.tree_leaves(params), pnn.tree_leaves(moved), strict=True):
        assert np.array_equal(a, pnn.to_numpy(b))
        assert pnn.namespace(b) is tb.be.xp or tb.be.name == "numpy"


def test_save_is_atomic_and_leaves_no_temp_files(tb, tmp_path):
    path = tmp_path / "ckpt.safetensors"
    pnn.save(path, tb.init(_model(), seed=1))
    first = path.read_bytes()
    pnn.save(path, tb.init(_model(), seed=2))
    assert path.read_bytes() != first
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]


def test_checkpoint_metadata_names_format_and_version(tmp_path):
    import json
    import struct

    pnn.save(tmp_path / "m.safetensors", _model().init(seed=0, backend="numpy"))
    raw = (tmp_path / "m.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8 : 8 + n])["__metadata__"]
    assert meta["format"].startswith("portable_nn")
    assert meta["version"] == pnn.__version__
    assert json.loads(meta["tree"])[0] == {"W": "0.W", "b": "0.b"}


@pytest.mark.parametrize("bad", ["cpu:1", "device9"])
def test_load_onto_missing_device_raises_backend_error(tmp_path, bad):
    pnn.save(tmp_path / "m.safetensors", _model().init(seed=0, backend="numpy"))
    with pytest.raises(pnn.BackendError):
        pnn.load(tmp_path / "m.safetensors", backend=f"numpy:{bad}")
