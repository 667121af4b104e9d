"""Regression tests for save / load / to_backend defects: one test (or family) per defect, named after it."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple

import array_api_compat
import numpy as np
import pytest

import portable_nn as pnn
from portable_nn import optim

# --------------------------------------------------------------------------- helpers

_SPECS = ("numpy", "cupy", "torch", "jax", "array_api_strict", "array_api_strict:device1")
_PAIRS = [(a, b) for a in _SPECS for b in _SPECS]


def _backend_or_skip(spec: str) -> pnn.Backend:
    if spec.partition(":")[0] not in pnn.available_backends():
        pytest.skip(f"backend {spec} is not installed here")
    try:
        return pnn.get_backend(spec)
    except pnn.BackendError as e:
        pytest.skip(f"backend {spec} unavailable: {e}")


def _host(a: Any) -> np.ndarray:
    """A host copy of an array leaf (to_numpy returns NumPy arrays as they are, so copy)."""
    return np.array(pnn.to_numpy(a), copy=True)


def _host_view(be: pnn.Backend, a: Any) -> np.ndarray | None:
    """A NumPy view of ``a``'s own memory (no copy), or None where it is not in host memory."""
    return None if be.is_gpu else np.from_dlpack(a)


def _zero_in_place(a: Any) -> bool:
    """Zero ``a`` with its library's own in-place op; False for immutable arrays (JAX)."""
    if array_api_compat.is_jax_array(a):
        return False
    if array_api_compat.is_torch_array(a):
        a.zero_()
    else:  # NumPy, CuPy, array_api_strict
        a[...] = 0
    return True


def _assert_same_tree(got: Any, want: Any, where: str = "tree") -> None:
    """Same container types, keys and lengths; array leaves equal in dtype, shape and bits; other leaves equal by type."""
    assert type(got) is type(want), f"{where}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), f"{where}: keys {list(got)} != {list(want)}"
        for k in want:
            _assert_same_tree(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), f"{where}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same_tree(g, w, f"{where}.{i}")
    elif hasattr(want, "shape"):
        assert pnn.namespace(got) is pnn.namespace(want), where
        assert got.dtype == want.dtype and tuple(got.shape) == tuple(want.shape), where
        assert np.array_equal(_host(got), _host(want), equal_nan=True), f"{where}: values differ"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Any) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _model() -> pnn.Sequential:
    return pnn.Sequential(pnn.Linear(3, 4), pnn.Tanh(), pnn.LayerNorm(4), pnn.Linear(4, 2))


# --------------------------------------------------------------------------- 1. to_backend copies


@pytest.mark.parametrize(("src", "dst"), _PAIRS, ids=[f"{a}->{b}" for a, b in _PAIRS])
def test_to_backend_never_shares_memory_with_source(src: str, dst: str) -> None:
    a, b = _backend_or_skip(src), _backend_or_skip(dst)
    host = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    tree = {"W": a.asarray(host.copy()), "rest": (a.asarray(host[0].copy()), [a.asarray(np.array(2.5, np.float32))])}
    want = [_host(x) for x in pnn.tree_leaves(tree)]
    moved = pnn.to_backend(tree, b)
    for x, y, w in zip(pnn.tree_leaves(tree), pnn.tree_leaves(moved), want, strict=True):
        assert y is not x
        hx, hy = _host_view(a, x), _host_view(b, y)
        if hx is not None and hy is not None:
            assert not np.shares_memory(hx, hy), f"to_backend({src} -> {dst}) returned a view of the source"
        if _zero_in_place(y):  # writing into the result leaves the source as it was
            assert np.array_equal(_host(x), w), f"zeroing the {dst} result changed the {src} source"
    moved = pnn.to_backend(tree, b)
    for x, y, w in zip(pnn.tree_leaves(tree), pnn.tree_leaves(moved), want, strict=True):
        if _zero_in_place(x):  # and writing into the source leaves the result as it was
            assert np.array_equal(_host(y), w), f"zeroing the {src} source changed the {dst} result"


# --------------------------------------------------------------------------- 2. load casts before comparing


def test_load_casts_to_dtype_before_comparing_with_like(tb: Any, tmp_path: Any) -> None:
    path = tmp_path / "m.safetensors"
    pnn.save(path, _model().init(seed=0, backend="numpy", dtype="float64"))
    before = path.read_bytes()
    like32 = tb.init(_model(), seed=1, dtype="float32")
    loaded = pnn.load(path, backend=tb.be, dtype="float32", like=like32)
    assert [a.dtype for a in pnn.tree_leaves(loaded)] == [a.dtype for a in pnn.tree_leaves(like32)]
    want = pnn.tree_leaves(_model().init(seed=0, backend="numpy", dtype="float64"))
    for a, w in zip(pnn.tree_leaves(loaded), want, strict=True):
        assert np.array_equal(_host(a), w.astype(np.float32))
    # without the cast, only the dtype differs: the message says to cast, not to build another model
    with pytest.raises(pnn.CheckpointError, match=r"param '0\.W' is float64\[3, 4\] in the file but float32\[3, 4\]") as e:
        pnn.load(path, backend=tb.be, like=like32)
    assert "dtype='float32'" in str(e.value) and "architecture" not in str(e.value)
    if "float64" in tb.dtypes:  # the cast dtype itself is compared with like's
        like64 = tb.init(_model(), seed=1, dtype="float64")
        with pytest.raises(pnn.CheckpointError, match=r"'0\.W'.*float32\[3, 4\].*float64\[3, 4\]") as e:
            pnn.load(path, backend=tb.be, dtype="float32", like=like64)
        assert "architecture" not in str(e.value)
    # a real architecture difference is still reported as one, after the cast
    wider = pnn.Sequential(pnn.Linear(3, 5), pnn.Tanh(), pnn.LayerNorm(5), pnn.Linear(5, 2))
    with pytest.raises(pnn.CheckpointError, match=r"'0\.W'.*\[3, 4\].*float32\[3, 5\].*architecture"):
        pnn.load(path, backend=tb.be, dtype="float32", like=tb.init(wider, dtype="float32"))
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- 3. 0-d shapes


def test_save_load_round_trips_0d_shapes_exactly(tb: Any, tmp_path: Any) -> None:
    params = {
        "scale": tb.asarray(np.array(1.5), tb.float),
        "one": tb.asarray(np.array([2.0]), tb.float),
        "W": tb.asarray(np.arange(6.0).reshape(2, 3), tb.float),
        "empty": tb.asarray(np.zeros((0, 3)), tb.float),
        "count": tb.asarray(np.array(7, dtype=np.int32)),
    }
    path = tmp_path / "m.safetensors"
    pnn.save(path, params)
    _assert_same_tree(pnn.load(path, backend=tb.be), params)
    _assert_same_tree(pnn.load(path, backend=tb.be, like=params), params)  # the file it just wrote fits


# --------------------------------------------------------------------------- 4. file mode


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_save_keeps_the_replaced_files_mode_and_new_files_get_the_umask_default(tb: Any, tmp_path: Any) -> None:
    params = tb.init(_model())
    for mask in (0o022, 0o002, 0o077):
        path = tmp_path / f"new-{mask:o}.safetensors"
        with _umask(mask):
            pnn.save(path, params)
        assert _mode(path) == 0o666 & ~mask, f"umask {mask:o}: new file has mode {_mode(path):o}"
    path = tmp_path / "old.safetensors"
    for mode in (0o644, 0o640, 0o604):
        pnn.save(path, params)
        os.chmod(path, mode)
        with _umask(0o077):
            pnn.save(path, tb.init(_model(), seed=4))
        assert _mode(path) == mode, f"overwriting a {mode:o} file left mode {_mode(path):o}"
    _assert_same_tree(pnn.load(path, backend=tb.be), tb.init(_model(), seed=4))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["old.safetensors"] + [f"new-{m:o}.safetensors" for m in (0o022, 0o002, 0o077)]
    )


# --------------------------------------------------------------------------- 5. "__metadata__" key


def test_save_refuses_a_metadata_dict_key_and_writes_nothing(tb: Any, tmp_path: Any) -> None:
    path = tmp_path / "m.safetensors"
    pnn.save(path, tb.init(_model()))
    before, listing = path.read_bytes(), sorted(os.listdir(tmp_path))
    for value in (tb.asarray(np.ones(2), tb.float), 3):
        with pytest.raises((TypeError, ValueError)) as e:
            pnn.save(path, {"__metadata__": value, "W": tb.asarray(np.ones(2), tb.float)})
        msg = str(e.value)
        assert "save" in msg and "'__metadata__'" in msg and "reserved" in msg and "Rename" in msg, msg
        assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == listing
    # below the top level the key names no tensor of its own, so it saves and loads
    nested = {"run": {"__metadata__": tb.asarray(np.ones(2), tb.float)}}
    pnn.save(path, nested)
    _assert_same_tree(pnn.load(path, backend=tb.be), nested)


# --------------------------------------------------------------------------- 6. containers and scalars


class Pair(NamedTuple):  # a NamedTuple outside portable_nn: loads as a plain tuple unless like= names it
    left: Any
    right: Any


def test_tuples_and_namedtuples_round_trip_by_type(tb: Any, tmp_path: Any) -> None:
    W = tb.asarray(np.ones((2, 2)), tb.float)
    tree = {
        "t": (W, (W * 2,), ()),
        "l": [W, [], {}],
        "adam": optim.AdamState(3, {"W": W}, {"W": W * 3}),
        "sgd": optim.SGDState(None),
    }
    path = tmp_path / "m.safetensors"
    pnn.save(path, tree)
    loaded = pnn.load(path, backend=tb.be)
    _assert_same_tree(loaded, tree)
    _assert_same_tree(pnn.load(path, backend=tb.be, like=tree), tree)
    # a NamedTuple from outside portable_nn: a plain tuple from the file, its own type from like=
    pnn.save(path, Pair(W, None))
    assert type(pnn.load(path, backend=tb.be)) is tuple
    _assert_same_tree(pnn.load(path, backend=tb.be, like=Pair(W, None)), Pair(W, None))


def test_python_scalars_and_none_round_trip_as_themselves(tb: Any, tmp_path: Any) -> None:
    tree = {"epoch": 7, "lr": 0.1, "best": -1e300, "done": False, "flags": (True, 2**62), "none": None,
            "big": -(2**63), "W": tb.asarray(np.ones(2), tb.float)}
    path = tmp_path / "m.safetensors"
    pnn.save(path, tree)
    _assert_same_tree(pnn.load(path, backend=tb.be), tree)
    loaded = pnn.load(path, backend=tb.be, dtype="float32")  # dtype casts arrays, never Python scalars
    assert type(loaded["lr"]) is float and loaded["lr"] == 0.1 and loaded["W"].dtype == tb.be.dtype("float32")
    with pytest.raises(pnn.CheckpointError, match=r"'epoch' is an int in the file but a float in the model"):
        pnn.load(path, backend=tb.be, like={**tree, "epoch": 7.0})
    with pytest.raises(ValueError, match=r"save: leaf 'n' is the int 18446744073709551616.*int64"):
        pnn.save(path, {"n": 2**64})
    _assert_same_tree(pnn.load(path, backend=tb.be), tree)  # the refused save left the file alone


def _grads(params: Any) -> Any:
    return pnn.tree_map(lambda p: p * 0.5 - 0.25, params)


@pytest.mark.parametrize(
    "opt",
    [optim.Adam(lr=0.01), optim.AdamW(lr=0.01), optim.SGD(0.1, momentum=0.9), optim.SGD(0.1)],
    ids=["adam", "adamw", "sgd-momentum", "sgd-no-momentum"],
)
def test_optimizer_state_save_load_continues_bit_for_bit(tb: Any, tmp_path: Any, opt: Any) -> None:
    params = tb.init(_model(), seed=2)
    state = opt.init(params)
    params, state = opt.step(params, _grads(params), state)
    params, state = opt.step(params, _grads(params), state)
    checkpoint = {"params": params, "opt_state": state, "epoch": 2, "best_loss": 0.25, "note": None}
    path = tmp_path / "resume.safetensors"
    pnn.save(path, checkpoint)
    want = opt.step(params, _grads(params), state)
    for like in (None, {"params": tb.init(_model()), "opt_state": opt.init(params), "epoch": 0,
                        "best_loss": 0.0, "note": None}):
        loaded = pnn.load(path, backend=tb.be, like=like)
        _assert_same_tree(loaded, checkpoint)
        assert type(loaded["opt_state"]) is type(state)
        got = opt.step(loaded["params"], _grads(loaded["params"]), loaded["opt_state"])
        _assert_same_tree(got, want)


def test_namedtuple_types_named_by_a_file_are_never_imported(tb: Any, tmp_path: Any) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "evil.safetensors"
    for ref, fields in [
        ("antigravity:Thing", ["a"]),  # importing it would open a web browser
        ("portable_nn.__main__:Thing", ["a"]),  # inside portable_nn but not imported: still never imported
        ("os:stat_result", ["a"]),
        ("portable_nn.optim:AdamState", ["a"]),  # a portable_nn class whose fields differ
        ("portable_nn.optim:_hyper", ["a"]),  # not a class
        ("portable_nn.optim:AdamState.__init__.__globals__", ["a"]),
    ]:
        module = ref.partition(":")[0]
        was_loaded = module in sys.modules
        tree = {".tuple": ["0"], ".type": ref, ".fields": fields}
        meta = {"format": "portable_nn.params/2", "version": pnn.__version__, "tree": json.dumps(tree)}
        save_file({"0": np.ones(2, dtype=np.float32)}, str(path), meta)
        loaded = pnn.load(path, backend=tb.be)
        assert type(loaded) is tuple and len(loaded) == 1, ref
        assert (module in sys.modules) == was_loaded, f"load imported {module}"


def test_old_format_1_files_still_load(tb: Any, tmp_path: Any) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "v1.safetensors"
    tree = [{"W": "0.W", "b": "0.b"}, {}]
    meta = {"format": "portable_nn.params/1", "version": "0.1.0", "tree": json.dumps(tree)}
    W, b = np.ones((3, 2), dtype=np.float32), np.zeros(2, dtype=np.float32)
    save_file({"0.W": W, "0.b": b}, str(path), meta)
    want = [{"W": tb.be.asarray(W), "b": tb.be.asarray(b)}, {}]
    _assert_same_tree(pnn.load(path, backend=tb.be), want)
    # a tuple saved by the old format came back as a list: like= gives it its type again
    as_tuple = ({"W": tb.be.asarray(W), "b": tb.be.asarray(b)}, {})
    _assert_same_tree(pnn.load(path, backend=tb.be, like=as_tuple), as_tuple)
    # trees of dicts, lists and arrays are still written in format 1, readable by older versions
    pnn.save(path, want)
    assert pnn.load(path, backend="numpy")[0]["W"].shape == (3, 2)
    header = path.read_bytes()
    n = int.from_bytes(header[:8], "little")
    assert json.loads(header[8 : 8 + n])["__metadata__"]["format"] == "portable_nn.params/1"


def test_to_backend_moves_optimizer_states_with_their_count_and_none_fields(tb):
    """to_backend kept failing on an AdamState's int count and an SGDState's None velocity."""
    model = pnn.Sequential(pnn.Linear(3, 2))
    params = model.init(seed=0, backend="numpy", dtype=tb.float)
    for opt in (pnn.optim.Adam(), pnn.optim.SGD(0.1), pnn.optim.SGD(0.1, momentum=0.9)):
        state = opt.init(params)
        grads = pnn.tree_map(lambda p: p * 0.5, params)
        _, state = opt.step(params, grads, state)
        moved_params, moved = pnn.to_backend(params, tb.be), pnn.to_backend(state, tb.be)
        assert type(moved) is type(state)
        if isinstance(state, pnn.optim.AdamState):
            assert moved.count == state.count == 1
        expected, _ = opt.step(params, grads, state)
        got, _ = opt.step(moved_params, pnn.to_backend(grads, tb.be), moved)
        for a, b in zip(pnn.tree_leaves(got), pnn.tree_leaves(expected), strict=True):
            np.testing.assert_allclose(pnn.to_numpy(a), b, rtol=1e-6)
