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


def _spec(tb):
    """The backend spec an estimator takes (``backend=`` is a string: clone deep-copies parameters)."""
    return f"{tb.be.name}:{tb.be.device_label}"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_save_load_keeps_a_class_weight_dict(tb, tmp_path):
    """A fitted classifier with class_weight={0: 2.0, 1: 1.0} saved its class_weight as an 'object'
    hyperparameter (its repr), so load refused it ('pass the object hyperparameters again: missing
    ['class_weight']') although it is plain data; it now round-trips with its int keys."""
    pytest.importorskip("sklearn")
    from portable_nn.sklearn import MLPClassifier

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, batch_size=20, class_weight={0: 2.0, 1: 1.0},
                        backend=_spec(tb), dtype=tb.float, random_state=0).fit(X, y)
    clf.save(tmp_path / "clf")
    back = MLPClassifier.load(tmp_path / "clf")
    assert back.get_params()["class_weight"] == {0: 2.0, 1: 1.0}
    assert np.array_equal(pnn.to_numpy(back.predict_proba(X)), pnn.to_numpy(clf.predict_proba(X)))


def test_sklearn_wrong_keyword_names_the_estimator_not_a_private_base():
    """MLPRegressor and NeuralNetRegressor inherited __init__ from private bases, so a misspelt keyword
    raised 'MLPPart.__init__() got an unexpected keyword argument' (resp. 'WrapPart'): a private class."""
    pytest.importorskip("sklearn")
    from portable_nn import sklearn as pks

    for cls in (pks.MLPClassifier, pks.MLPRegressor, pks.NeuralNetClassifier, pks.NeuralNetRegressor):
        with pytest.raises(TypeError, match=rf"^{cls.__name__}\.__init__\(\) got an unexpected keyword") as e:
            cls(max_iters=3)
        assert "Part" not in str(e.value)
        assert cls().get_params() == cls(**cls().get_params()).get_params()


def _checkpointed(tb, tmp_path, model, params, X, Y, **kw):
    path = tmp_path / "run.safetensors"
    kwargs = dict(loss=pnn.losses.mean_squared_error, optimizer=pnn.optim.SGD(lr=0.1), epochs=1, batch_size=8,
                  seed=0, checkpoint=path, progress=False)
    pnn.fit(model, params, X, Y, **kwargs)
    return path, {**kwargs, "epochs": 2, "resume": True, **kw}


def test_resume_with_params_of_another_dtype_names_the_params_not_x(tb, tmp_path):
    """Resuming a float32 run with float64 params (the same X, Y) was refused as 'written for another X'
    (fit casts float X to the params' dtype, and the fingerprint hashed the cast X): the user had not
    changed X. The refusal now names the params' dtype, and the file is left as it was."""
    if "float64" not in tb.dtypes:
        pytest.skip("needs float64 params beside float32 ones")
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((24, 3)).astype(np.float32), rng.standard_normal((24, 2)).astype(np.float32)
    model = pnn.Sequential(pnn.Linear(3, 4), pnn.ReLU(), pnn.Linear(4, 2))
    path, kwargs = _checkpointed(tb, tmp_path, model, tb.init(model, dtype="float32"), tb.asarray(X), tb.asarray(Y))
    before = path.read_bytes()
    with pytest.raises(pnn.CheckpointError, match="another params dtype: it has 'float32', this run has 'float64'"):
        pnn.fit(model, tb.init(model, dtype="float64"), tb.asarray(X), tb.asarray(Y), **kwargs)
    assert path.read_bytes() == before


def test_resume_refusal_for_a_big_model_shows_where_it_differs(tb, tmp_path):
    """Resuming with another model printed both models' full descriptions (for 16 layers about 5,000
    characters), the one changed layer buried in them; the refusal now shows the part around the first
    difference."""
    X, Y = _regression(tb)
    layers = [pnn.Linear(3, 4)] + [layer for _ in range(8) for layer in (pnn.ReLU(), pnn.Linear(4, 4))]
    model = pnn.Sequential(*layers[:-1], pnn.Linear(4, 2))
    path, kwargs = _checkpointed(tb, tmp_path, model, tb.init(model), X, Y)
    layers[9] = pnn.Tanh()
    other = pnn.Sequential(*layers[:-1], pnn.Linear(4, 2))
    with pytest.raises(pnn.CheckpointError, match="written for another model: they first differ") as e:
        pnn.fit(other, tb.init(other), X, Y, **kwargs)
    assert "activations.ReLU" in str(e.value) and "activations.Tanh" in str(e.value) and len(str(e.value)) < 800


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_partial_fit_classes_given_on_the_device(tb):
    """Under array API dispatch, partial_fit(X, y, classes=xp.asarray([0, 1])) kept the device array as
    classes_, and the label checks ran NumPy on it: a RuntimeError from array-api-strict ("Can't convert
    array on the device1 device to a NumPy array"), a torch tensor as classes_ elsewhere. classes_ is now
    host data, as fit's."""
    sklearn = pytest.importorskip("sklearn")
    if tb.be.name not in ("torch", "array_api_strict", "jax"):
        pytest.skip("array API dispatch is tested with torch, JAX and array-api-strict inputs, in their sessions")
    from portable_nn.sklearn import MLPClassifier

    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    Xd, yd = tb.asarray(X, dtype=tb.float), tb.asarray(y)
    with sklearn.config_context(array_api_dispatch=True):
        clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
        clf.partial_fit(Xd, yd, classes=tb.asarray(np.array([0, 1, 2])))
        clf.partial_fit(Xd, yd)
        assert isinstance(clf.classes_, np.ndarray) and clf.classes_.tolist() == [0, 1, 2]
        assert tuple(clf.predict_proba(Xd).shape) == (30, 3)


def test_resume_from_a_damaged_checkpoint_names_fit_and_the_way_out(tb, tmp_path):
    """fit(checkpoint=path, resume=True) with an empty or truncated file at path raised load's error
    ("load: ... is truncated (0 bytes) ... Re-save it with pnn.save"): it named load, not fit, and told
    a user of fit nothing they could do. It now names fit and resume=False; the file is left as it was."""
    X, Y = _regression(tb)
    model = pnn.Linear(3, 2)
    path = tmp_path / "run.safetensors"
    path.write_bytes(b"")
    with pytest.raises(pnn.CheckpointError, match=r"^fit: cannot resume from checkpoint=.*truncated.*resume=False"):
        pnn.fit(model, tb.init(model), X, Y, loss=pnn.losses.mean_squared_error, optimizer=pnn.optim.SGD(lr=0.1),
                epochs=1, batch_size=8, checkpoint=path, resume=True, progress=False)
    assert path.read_bytes() == b""


def test_load_onto_a_device_without_float64_names_load_and_the_file(tb, tmp_path):
    """pnn.load of a float64 file onto array-api-strict's no_float64 device raised the backend's bare
    PrecisionError ("Backend(...) does not support dtype float64"), naming neither load nor the file."""
    if tb.float != "float64":
        pytest.skip("needs float64 arrays to save")
    path = tmp_path / "p.safetensors"
    pnn.save(path, {"W": tb.asarray(np.zeros((2, 2)), dtype=tb.float)})
    with pytest.raises(pnn.PrecisionError, match=r"^load: .*p\.safetensors.*float64.*dtype='float32'"):
        pnn.load(path, backend="array_api_strict:no_float64")
    assert pnn.load(path, backend="array_api_strict:no_float64", dtype="float32")["W"].shape == (2, 2)


def test_checkpoint_fingerprint_of_dask_data_reads_a_few_blocks_not_all(tb, tmp_path):
    """With checkpoint=, fit fingerprinted Dask data by 256 rows spread over all of it, which touched
    every block (up to 256): a whole extra pass over data larger than memory, for X, Y and the
    validation data, before the first step. It now samples rows from at most 4 blocks of each."""
    da = pytest.importorskip("dask.array")
    reads: list[int] = []
    rows = np.random.default_rng(0).standard_normal((64 * 8, 3))

    def block(block_info=None):
        b = block_info[None]["chunk-location"][0]
        reads.append(b)
        return rows[8 * b : 8 * b + 8]

    X = da.map_blocks(block, chunks=((8,) * 64, (3,)), dtype=np.float64)
    Y = da.from_array(rows[:, :2], chunks=(8, 2))
    model = pnn.Linear(3, 2)
    pnn.fit(model, tb.init(model), X, Y, loss=pnn.losses.mean_squared_error, optimizer=pnn.optim.SGD(lr=0.1),
            epochs=0, batch_size=8, checkpoint=tmp_path / "run.safetensors", progress=False)
    assert len(set(reads)) <= 5, sorted(set(reads))  # the entry check's first block, and the fingerprint's 4
