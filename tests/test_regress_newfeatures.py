"""Regression tests for defects found by trying to break the newest features (the training engine, mixed
precision, sequence models, index inputs), one test (or group) per defect, named after it.

Each runs on the backend chosen in conftest.py (``tb``) where it applies.
"""

from __future__ import annotations

import os
import re
import signal
from typing import Any

import array_api_compat
import numpy as np
import pytest

import portable_nn as pnn

from ._support import host

SCE = pnn.losses.softmax_cross_entropy


# --------------------------------------------------------------------------- narrow integer ids and labels


@pytest.mark.parametrize("dtype, V, backward, N", [("uint8", 300, "onehot", 12), ("int8", 100, "segments", 200)])
def test_embedding_takes_narrow_integer_ids(tb: Any, dtype: str, V: int, backward: str, N: int) -> None:
    """uint8/int8 ids: ``arange(V, dtype=ids.dtype)`` wrapped past 255 (NumPy: wrong dW rows), ``X >= V`` with
    V outside the dtype raised a false 'ids must be in [0, V)' (torch, JAX) or OverflowError
    (array_api_strict), and torch's take refused uint8 indices."""
    emb = pnn.Embedding(V, 3, backward=backward)
    params = tb.init(emb, dtype="float32")
    ids = np.random.default_rng(0).integers(0, min(V, np.iinfo(dtype).max + 1), (2, N // 2)).astype(dtype)
    dY = np.random.default_rng(1).standard_normal((2, N // 2, 3)).astype("float32")
    Y, backprop = emb.apply(params, tb.asarray(ids, dtype=dtype))
    _, grads = backprop(tb.asarray(dY, dtype="float32"))
    want = np.zeros((V, 3))
    np.add.at(want, ids.ravel().astype(np.int64), dY.reshape(-1, 3))
    np.testing.assert_allclose(host(grads["W"]), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(host(Y), host(params["W"])[ids.astype(np.int64)])


def test_softmax_cross_entropy_takes_uint8_labels_of_many_classes(tb: Any) -> None:
    """uint8 labels with more than 256 classes: the one-hot's ``arange(C, dtype=labels.dtype)`` wrapped."""
    C = 300
    Y = tb.asarray(np.random.default_rng(0).standard_normal((4, C)), dtype="float32")
    labels = np.array([0, 7, 255, 44])
    loss8, dY8 = SCE(Y, tb.asarray(labels, dtype="uint8"))
    loss64, dY64 = SCE(Y, tb.asarray(labels, dtype="int64"))
    assert float(loss8) == pytest.approx(float(loss64), rel=1e-6)
    np.testing.assert_allclose(host(dY8), host(dY64), rtol=1e-6)


def test_fit_a_language_model_on_uint8_ids(tb: Any) -> None:
    """fit keeps integer X and labels as given: uint8 token ids train as int64 ones do."""
    V = 260
    model = pnn.Sequential(pnn.Embedding(V, 4), pnn.Linear(4, V))
    params = tb.init(model, dtype="float32")
    ids = np.random.default_rng(0).integers(0, 256, (6, 3))
    ids[0] = [0, 3, 255]  # ids that a wrapped arange(260) met twice
    kw = dict(loss=SCE, optimizer=pnn.optim.SGD(0.5), epochs=2, batch_size=4, progress=False)
    narrow, h8 = pnn.fit(model, params, ids.astype("uint8"), ids.astype("uint8"), **kw)
    wide, h64 = pnn.fit(model, params, ids, ids, **kw)
    assert h8["loss"] == pytest.approx(h64["loss"], rel=1e-6) and h8["accuracy"] == h64["accuracy"]
    for a, b in zip(pnn.tree_leaves(narrow), pnn.tree_leaves(wide), strict=True):
        np.testing.assert_allclose(host(a), host(b), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- generate


@pytest.mark.parametrize("temperature", [1e-45, 1e-300])
def test_generate_with_a_tiny_temperature_is_greedy(tb: Any, temperature: float) -> None:
    """``logits / temperature`` overflowed to inf, so ``inf - inf`` made every probability NaN and every
    new id 0; the limit of a temperature going to 0 is the greedy choice."""
    model = pnn.Sequential(pnn.Embedding(7, 8), pnn.Linear(8, 7))
    params = tb.init(model, dtype="float32")
    prompts = np.array([[1, 2, 3], [4, 5, 6]])
    cold = pnn.generate(model, params, prompts, 3, temperature=temperature, seed=1)
    greedy = pnn.generate(model, params, prompts, 3, top_k=1)
    np.testing.assert_array_equal(host(cold), host(greedy))


def test_generate_refuses_a_prompt_dtype_that_cannot_hold_the_vocabulary(tb: Any) -> None:
    """A uint8 prompt for a 300-id vocabulary: new ids past 255 were cast into uint8 and wrapped around."""
    model = pnn.Sequential(pnn.Embedding(300, 4), pnn.Linear(4, 300))
    params = tb.init(model, dtype="float32")
    prompt = tb.be.asarray(np.array([[1, 2]]), dtype="uint8")
    with pytest.raises(ValueError, match=r"uint8 holds ids up to 255.*300 ids.*int64"):
        pnn.generate(model, params, prompt, 3)
    out = pnn.generate(model, params, tb.be.asarray(np.array([[1, 2]]), dtype="int64"), 3)
    assert tuple(out.shape) == (1, 5)


# --------------------------------------------------------------------------- Dask data


def test_dask_sequence_labels_with_an_empty_block(tb: Any) -> None:
    """An empty row block (chunks (5, 0, 6)) with 2-D labels (batch, seq): fit and evaluate crashed inside
    Dask's own ``Y.min()`` ('all the input array dimensions ... must match exactly'). Empty blocks are
    dropped; the run equals the in-memory one."""
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    rng = np.random.default_rng(0)
    X, Y = rng.integers(0, 5, (11, 4)), rng.integers(0, 5, (11, 4))
    model = pnn.Sequential(pnn.Embedding(5, 4), pnn.Linear(4, 5))
    params = tb.init(model, dtype="float32")
    kw = dict(loss=SCE, optimizer=pnn.optim.SGD(0.1), epochs=2, batch_size=4, progress=False, shuffle=False,
              compile=False)
    Xd, Yd = (da.from_array(A, chunks=((5, 0, 6), (4,))) for A in (X, Y))
    with dask.config.set(scheduler="synchronous"):
        streamed, hd = pnn.fit(model, params, Xd, Yd, validation_data=(Xd, Yd), **kw)
        ev = pnn.evaluate(model, streamed, Xd, Yd, loss=SCE)
        assert tuple(pnn.predict(model, streamed, Xd).shape) == (11, 4, 5)
    memory, hm = pnn.fit(model, params, X, Y, validation_data=(X, Y), **kw)
    assert hd["loss"] == pytest.approx(hm["loss"], rel=1e-5) and hd["accuracy"] == hm["accuracy"]
    assert ev[0] == pytest.approx(hm["val_loss"][-1], rel=1e-5) and ev[1] == hm["val_accuracy"][-1]
    for a, b in zip(pnn.tree_leaves(streamed), pnn.tree_leaves(memory), strict=True):
        np.testing.assert_allclose(host(a), host(b), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- resume


_CTRL_C_AT_ROWS: list[int] = []


def _loss_ctrl_c_in_validation(Yp: Any, T: Any) -> Any:
    """softmax_cross_entropy; a Ctrl-C (a real SIGINT) when it sees a batch of ``_CTRL_C_AT_ROWS[0]`` rows."""
    if _CTRL_C_AT_ROWS and Yp.shape[0] == _CTRL_C_AT_ROWS[0]:
        _CTRL_C_AT_ROWS.clear()
        os.kill(os.getpid(), signal.SIGINT)
    return SCE(Yp, T)


@pytest.mark.filterwarnings("ignore:overflow", "ignore:invalid")  # NumPy's, in the steps that are skipped
def test_resume_after_ctrl_c_in_validation_keeps_the_skipped_steps(tb: Any, tmp_path: Any) -> None:
    """float16 with a loss scale that overflows at first: a Ctrl-C during epoch 0's validation saved the run
    with the epoch's skipped steps already counted as before it, so the resumed history said 0 skipped steps
    for epoch 0."""
    if "float16" not in pnn.available_precisions(tb.be):
        pytest.skip(f"{tb.spec} has no float16")
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((24, 4)), rng.integers(0, 3, 24)
    Xv, Yv = X[:9], Y[:9]  # validation batches have 9 rows, training ones 6
    model = pnn.Sequential(pnn.Linear(4, 8), pnn.Tanh(), pnn.Linear(8, 3))
    params = tb.init(model, dtype="float32")
    kw = dict(loss=_loss_ctrl_c_in_validation, epochs=2, batch_size=6, progress=False, precision="float16",
              optimizer=pnn.optim.DynamicLossScale(pnn.optim.SGD(0.1), init_scale=2.0**40),
              validation_data=(Xv, Yv), compile=False)
    path = str(tmp_path / "run.safetensors")
    _CTRL_C_AT_ROWS[:] = [9]
    with pytest.raises(pnn.FitInterrupted):
        pnn.fit(model, params, X, Y, checkpoint=path, **kw)
    _CTRL_C_AT_ROWS.clear()
    resumed, h_resumed = pnn.fit(model, params, X, Y, checkpoint=path, resume=True, **kw)
    whole, h_whole = pnn.fit(model, params, X, Y, **kw)
    assert h_whole["skipped_steps"][0] > 0
    assert h_resumed == h_whole
    for a, b in zip(pnn.tree_leaves(resumed), pnn.tree_leaves(whole), strict=True):
        np.testing.assert_array_equal(host(a), host(b))


@pytest.mark.parametrize("change", ["precision", "shuffle"])
def test_resume_with_another_precision_or_shuffle_names_the_setting(tb: Any, tmp_path: Any, change: str) -> None:
    """Resuming a float32 run with precision='float16' was refused as 'written for another optimizer' (float16
    wraps the optimizer in a loss scale), and another shuffle as 'another settings' with both JSON dumps:
    the refusal names the setting and both values; the file is left as it is."""
    if change == "precision" and "float16" not in pnn.available_precisions(tb.be):
        pytest.skip(f"{tb.spec} has no float16")
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((16, 3)), rng.integers(0, 2, 16)
    model = pnn.Sequential(pnn.Linear(3, 2))
    params = tb.init(model, dtype="float32")
    path = tmp_path / "run.safetensors"
    kw = dict(loss=SCE, optimizer=pnn.optim.Adam(0.01), epochs=1, batch_size=8, progress=False, checkpoint=path)
    pnn.fit(model, params, X, Y, **kw)
    before = path.read_bytes()
    other, said = {"precision": ({"precision": "float16"}, "precision=None in the file, 'float16' in this run"),
                   "shuffle": ({"shuffle": False}, "shuffle=True in the file, False in this run")}[change]
    with pytest.raises(pnn.CheckpointError, match=f"written with other settings: {said}\\. Resume with the same"):
        pnn.fit(model, params, X, Y, resume=True, **{**kw, "epochs": 2}, **other)
    assert path.read_bytes() == before


def _symlink(target: Any, link: Any) -> None:
    try:
        os.symlink(target, link)
    except (OSError, NotImplementedError) as e:  # Windows without the privilege
        pytest.skip(f"no symbolic links here: {e}")


def test_a_checkpoint_path_that_is_a_symbolic_link_is_written_through(tb: Any, tmp_path: Any) -> None:
    """The atomic save renamed its temporary file over the link: the link became a plain file, the target
    kept the old run. A link to a missing folder passed fit's entry check (the link's folder exists) and was
    replaced the same way; it is refused before any step, naming the target's folder."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((16, 3)), rng.integers(0, 2, 16)
    model = pnn.Sequential(pnn.Linear(3, 2))
    params = tb.init(model, dtype="float32")
    kw = dict(loss=SCE, optimizer=pnn.optim.SGD(0.1), batch_size=8, progress=False)
    (tmp_path / "disk").mkdir()
    target, link = tmp_path / "disk" / "run.safetensors", tmp_path / "run.safetensors"
    _symlink(target, link)
    pnn.fit(model, params, X, Y, epochs=1, checkpoint=link, **kw)
    assert link.is_symlink() and target.is_file()
    resumed, history = pnn.fit(model, params, X, Y, epochs=2, checkpoint=link, resume=True, **kw)
    whole, _ = pnn.fit(model, params, X, Y, epochs=2, **kw)
    assert link.is_symlink() and len(history["loss"]) == 2
    for a, b in zip(pnn.tree_leaves(resumed), pnn.tree_leaves(whole), strict=True):
        np.testing.assert_array_equal(host(a), host(b))
    dangling = tmp_path / "dangling.safetensors"
    _symlink(tmp_path / "missing" / "run.safetensors", dangling)
    missing = str(tmp_path / "missing")
    with pytest.raises(ValueError, match=f"symbolic link.*its folder '{missing}' does not exist.*os.makedirs"):
        pnn.fit(model, params, X, Y, epochs=1, checkpoint=dangling, **kw)
    assert dangling.is_symlink() and not os.path.exists(missing)
    os.makedirs(missing)  # the advice, followed
    pnn.fit(model, params, X, Y, epochs=1, checkpoint=dangling, **kw)
    assert dangling.is_symlink() and os.path.isfile(os.path.join(missing, "run.safetensors"))


# --------------------------------------------------------------------------- sample weights


def _weighted_mse(Y: Any, T: Any, weights: Any = None) -> Any:
    """The mean squared error, weighted per row as fit's sample_weight asks: sum(w_i l_i) / sum(w_i)."""
    xp = pnn.namespace(Y)
    D = Y - T
    w = xp.ones(Y.shape[0], dtype=Y.dtype, device=array_api_compat.device(Y)) if weights is None else weights
    total = xp.sum(w) * Y.shape[1]
    return xp.sum(w[:, None] * D * D) / total, 2.0 * w[:, None] * D / total


def test_sample_weight_with_a_loss_without_weights_is_refused_before_any_step(tb: Any) -> None:
    """fit(sample_weight=...) with a loss that takes no weights= (a user's) failed in the first step with Python's
    own "mse() got an unexpected keyword argument 'weights'" (or "run() got ..."): no word of fit, sample_weight
    or a fix. (The built-in losses take weights=: tests/test_weighted_losses.py.)"""

    def plain_mse(Y: Any, T: Any) -> Any:  # a user's loss, written before sample weights existed
        return pnn.losses.mean_squared_error(Y, T)

    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((12, 3)), rng.standard_normal((12, 1))
    model = pnn.Sequential(pnn.Linear(3, 1))
    params = tb.init(model, dtype="float32")
    w = np.arange(12) % 3
    kw = dict(optimizer=pnn.optim.SGD(0.1), epochs=2, batch_size=12, progress=False, shuffle=False)
    with pytest.raises(TypeError, match="sample_weight needs a loss that takes a weights= keyword, and "
                                        "plain_mse does not.*sum\\(w_i l_i\\) / sum\\(w_i\\)"):
        pnn.fit(model, params, X, Y, loss=plain_mse, sample_weight=w, **kw)
    weighted, _ = pnn.fit(model, params, X, Y, loss=_weighted_mse, sample_weight=w, **kw)  # the advice, followed
    keep = np.repeat(np.arange(12), w)  # a row of weight k counts as k copies of it
    copies, _ = pnn.fit(model, params, X[keep], Y[keep], loss=_weighted_mse, **kw)
    for a, b in zip(pnn.tree_leaves(weighted), pnn.tree_leaves(copies), strict=True):
        np.testing.assert_allclose(host(a), host(b), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- compile_step


def test_compile_step_refuses_a_precision_the_backend_lacks_as_fit_does(tb: Any) -> None:
    """compile_step(precision='bfloat16') on NumPy or array_api_strict ran the step and failed inside a layer
    ('LayerNorm(8): X has dtype float32 but the params are bfloat16', or a dtype lookup); fit refuses such a
    precision with a PrecisionError naming the backend, and so does the step now, at its first call."""
    missing = [p for p in ("bfloat16", "float16") if p not in pnn.available_precisions(tb.be)]
    if not missing:
        pytest.skip(f"{tb.spec} has both half precisions")
    model = pnn.Sequential(pnn.Linear(3, 4), pnn.LayerNorm(4), pnn.Linear(4, 2))
    params = tb.init(model, dtype="float32")
    opt = pnn.optim.DynamicLossScale(pnn.optim.SGD(0.1))
    step = pnn.compile_step(model, SCE, opt, precision=missing[0])
    X = tb.asarray(np.zeros((4, 3)), dtype="float32")
    T = tb.be.asarray(np.array([0, 1, 0, 1]), dtype="int64")
    with pytest.raises(pnn.PrecisionError, match=f"cannot compute in {missing[0]}.*Precisions here"):
        step(params, opt.init(params), X, T)
    with pytest.raises(pnn.PrecisionError, match=f"cannot compute in {missing[0]}"):
        pnn.fit(model, params, np.zeros((4, 3)), np.array([0, 1, 0, 1]), loss=SCE, optimizer=opt,
                precision=missing[0], progress=False)


# --------------------------------------------------------------------------- ids the model cannot take


def test_an_id_out_of_range_in_a_later_row_is_refused_before_any_step(tb: Any) -> None:
    """fit checked the ids of X's first row only: an id past the vocabulary in row 7 failed in the middle of
    training (NumPy, torch), or not at all on JAX, whose jitted step cannot read ids (take filled NaN,
    reported as 'the loss became NaN/inf ... lower the learning rate'). Validation ids too."""
    rng = np.random.default_rng(0)
    X, Y = rng.integers(0, 5, (12, 4)), rng.integers(0, 5, (12, 4))
    X[7, 2] = 9
    model = pnn.Sequential(pnn.Embedding(5, 4), pnn.Linear(4, 5))
    params = tb.init(model, dtype="float32")
    steps: list[int] = []

    def counting(Yp: Any, T: Any) -> Any:
        steps.append(int(Yp.shape[0]))
        return SCE(Yp, T)

    kw = dict(loss=counting, optimizer=pnn.optim.SGD(0.1), epochs=1, batch_size=4, progress=False)
    with pytest.raises(ValueError, match=r"fit: X holds ids in \[0, 9\], and row 7 holds 9.*Embedding\(5, 4\)"):
        pnn.fit(model, params, X, Y, **kw)
    assert all(rows == 1 for rows in steps)  # only fit's one-row entry check ran the loss
    good = X.copy()
    good[7, 2] = 4
    with pytest.raises(ValueError, match=r"fit: X_val holds ids in \[0, 9\], and row 7 holds 9"):
        pnn.fit(model, params, good, Y, validation_data=(X, Y), **kw)
    assert all(rows == 1 for rows in steps)


def test_dask_blocks_of_ids_are_checked_as_they_are_read(tb: Any) -> None:
    """The same on Dask data, block by block: the row is counted in the whole array."""
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    rng = np.random.default_rng(0)
    X, Y = rng.integers(0, 5, (12, 4)), rng.integers(0, 5, (12, 4))
    X[7, 2] = 9
    model = pnn.Sequential(pnn.Embedding(5, 4), pnn.Linear(4, 5))
    params = tb.init(model, dtype="float32")
    with dask.config.set(scheduler="synchronous"), \
            pytest.raises(ValueError, match=r"fit: X holds ids in \[0, 9\], and row 7 holds 9.*\(in block 1, rows 4\.\.7 of X"):
        pnn.fit(model, params, da.from_array(X, chunks=(4, 4)), da.from_array(Y, chunks=(4, 4)), loss=SCE,
                optimizer=pnn.optim.SGD(0.1), epochs=1, batch_size=4, progress=False, shuffle=False)


# --------------------------------------------------------------------------- loss scaling


class _PlainSGD:
    """An optimizer as fit documents one: init and step, no learning_rate."""

    def init(self, params: Any) -> tuple[()]:
        return ()

    def step(self, params: Any, grads: Any, state: Any) -> Any:
        return pnn.tree_map(lambda p, g: p - 0.1 * g, params, grads), state


@pytest.mark.filterwarnings("ignore:overflow", "ignore:invalid")  # NumPy's, in the steps that are skipped
def test_float16_fit_takes_an_optimizer_without_learning_rate(tb: Any) -> None:
    """fit documents an optimizer as init + step, but precision='float16' wrapped it in DynamicLossScale,
    which refused it for lacking learning_rate, in a message naming a DynamicLossScale the user never made."""
    if "float16" not in pnn.available_precisions(tb.be):
        pytest.skip(f"{tb.spec} has no float16")
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((16, 3)), rng.integers(0, 2, 16)
    model = pnn.Sequential(pnn.Linear(3, 4), pnn.Tanh(), pnn.Linear(4, 2))
    params = tb.init(model, dtype="float32")
    kw = dict(loss=SCE, epochs=2, batch_size=8, progress=False, precision="float16")
    mine, history = pnn.fit(model, params, X, Y, optimizer=_PlainSGD(), **kw)
    theirs, expected = pnn.fit(model, params, X, Y, optimizer=pnn.optim.SGD(0.1), **kw)
    assert "lr" not in history and history["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert history["skipped_steps"] == expected["skipped_steps"]
    for a, b in zip(pnn.tree_leaves(mine), pnn.tree_leaves(theirs), strict=True):
        np.testing.assert_allclose(host(a), host(b), rtol=1e-6, atol=1e-7)
    assert not hasattr(pnn.optim.DynamicLossScale(_PlainSGD()), "learning_rate")


# --------------------------------------------------------------------------- advice that works


@pytest.mark.parametrize("n, batch_size", [(13, 4), (21, 4), (7, 2)])
def test_a_one_row_last_batch_suggests_batch_sizes_that_work(tb: Any, n: int, batch_size: int) -> None:
    """A BatchNorm model whose last batch would have 1 row: fit suggested batch_size - 1 and + 1 whatever n
    was: for 13 rows and 4, '3' (13 % 3 == 1 again); for 21 and 4, '5'; for 7 and 2, '1 or 3' (both fail).
    Every batch size it suggests now trains."""
    model = pnn.Sequential(pnn.Linear(3, 4), pnn.BatchNorm(4), pnn.Linear(4, 2))
    params = tb.init(model, dtype="float32")
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((n, 3)), rng.integers(0, 2, n)
    kw = dict(loss=SCE, optimizer=pnn.optim.SGD(0.1), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"n % batch_size != 1, e\.g\. ([0-9]+)( or ([0-9]+))?\)") as info:
        pnn.fit(model, params, X, Y, batch_size=batch_size, **kw)
    said = re.search(r"e\.g\. ([0-9]+)(?: or ([0-9]+))?\)", str(info.value))
    assert said is not None
    for b in (int(v) for v in said.groups() if v is not None):
        pnn.fit(model, params, X, Y, batch_size=b, **kw)  # the advice, followed


class _Wrapped(pnn.Layer):
    """A layer of a user's own around an embedding, first in its model."""

    def __init__(self, inner: pnn.Layer) -> None:
        self.inner = inner

    def init_params(self, rng: Any, be: Any, dtype: str) -> Any:
        return self.inner.init_params(rng, be, dtype)

    def apply(self, params: Any, X: Any, *, train: bool = False, rng: Any = None) -> Any:
        return self.inner.apply(params, X, train=train, rng=rng)


class _WrappedIds(_Wrapped):
    @property
    def takes_indices(self) -> bool:
        return True


def test_integer_X_for_an_undeclared_index_layer_names_takes_indices(tb: Any) -> None:
    """An embedding inside a user's layer that does not declare takes_indices: fit said 'floating data is
    needed. Convert it ... dtype=float32', and the embedding then said 'pass them as integers ... do not
    cast them to float': advice in a circle. The first message now names takes_indices, and following it
    trains."""
    X = np.random.default_rng(0).integers(0, 5, (6, 3))
    kw = dict(loss=SCE, optimizer=pnn.optim.SGD(0.1), epochs=1, progress=False)
    model = pnn.Sequential(_Wrapped(pnn.Embedding(5, 4)), pnn.Linear(4, 5))
    with pytest.raises(TypeError, match="floating data is needed.*overrides the property Layer.takes_indices"):
        pnn.fit(model, tb.init(model, dtype="float32"), X, X, **kw)
    declared = pnn.Sequential(_WrappedIds(pnn.Embedding(5, 4)), pnn.Linear(4, 5))  # the advice, followed
    _, history = pnn.fit(declared, tb.init(declared, dtype="float32"), X, X, **kw)
    assert len(history["loss"]) == 1


# --------------------------------------------------------------------------- memory


def test_fit_does_not_hold_32_steps_of_language_model_logits(tb: Any) -> None:
    """For accuracy, the portable loop kept each step's model output until 32 steps were counted together:
    a language model's logits (batch, seq, vocab), 32 of them and then their concatenation, 64 times a
    step's logits at the peak (313 MiB for 4.9 MiB logits). It keeps the predicted classes instead.
    Measured with tracemalloc, which sees NumPy's allocations only."""
    if tb.spec not in ("numpy", "numpy-readonly"):
        pytest.skip("tracemalloc measures NumPy's arrays only")
    import tracemalloc

    V, B, T = 2000, 8, 16
    model = pnn.Sequential(pnn.Embedding(V, 4), pnn.Linear(4, V))
    params = tb.init(model, dtype="float32")
    rng = np.random.default_rng(0)
    X, Y = rng.integers(0, V, (B * 40, T)), rng.integers(0, V, (B * 40, T))
    logits = B * T * V * 4
    tracemalloc.start()
    try:
        _, history = pnn.fit(model, params, X, Y, loss=SCE, optimizer=pnn.optim.SGD(0.1), epochs=1, batch_size=B,
                             progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 0.0 <= history["accuracy"][0] <= 1.0
    assert peak < 16 * logits, f"peak {peak / 2**20:.1f} MiB for logits of {logits / 2**20:.1f} MiB a step"
