"""fit / predict: accuracy on digits, determinism, validation, early stopping, faults."""

from __future__ import annotations

import numpy as np
import pytest

import portable_nn as pnn

sklearn = pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), scaler.transform(Xte), ytr, yte


def _mlp():
    return pnn.Sequential(pnn.Linear(64, 128), pnn.ReLU(), pnn.Linear(128, 10))


def test_digits_reaches_097(tb, digits):
    Xtr, Xte, ytr, yte = digits
    model = _mlp()
    params = tb.init(model, seed=0, dtype="float32")
    params, history = pnn.fit(
        model, params, Xtr, ytr, loss=pnn.losses.softmax_cross_entropy,
        optimizer=pnn.optim.Adam(lr=3e-3), epochs=30, batch_size=32, seed=0,
        validation_data=(Xte, yte), progress=False,
    )
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 30 for v in history.values())
    assert history["loss"][-1] < history["loss"][0] / 10
    assert history["val_accuracy"][-1] >= 0.97
    Y = pnn.predict(model, params, Xte)
    assert pnn.namespace(Y) is pnn.namespace(pnn.tree_leaves(params)[0])
    accuracy = float(np.mean(np.argmax(pnn.to_numpy(Y), axis=1) == yte))
    assert accuracy == pytest.approx(history["val_accuracy"][-1])


def _small_problem(tb, n=40):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, 3))
    Y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.1
    return X, Y


def test_same_seed_gives_bit_identical_params(tb):
    X, Y = _small_problem(tb)
    model = pnn.Sequential(pnn.Linear(3, 8), pnn.Tanh(), pnn.Dropout(0.2), pnn.Linear(8, 1))
    runs = []
    for _ in range(2):
        params = tb.init(model, seed=4)
        params, _ = pnn.fit(
            model, params, X, Y, loss=pnn.losses.mean_squared_error,
            optimizer=pnn.optim.SGD(lr=0.05, momentum=0.9), epochs=3, batch_size=7, seed=11, progress=False,
        )
        runs.append([pnn.to_numpy(a) for a in pnn.tree_leaves(params)])
    assert all(np.array_equal(a, b) for a, b in zip(*runs, strict=True))


def test_different_seed_shuffles_differently(tb):
    X, Y = _small_problem(tb)
    model = pnn.Sequential(pnn.Linear(3, 1))
    outs = []
    for seed in (0, 1):
        params, _ = pnn.fit(
            model, tb.init(model, seed=0), X, Y, loss=pnn.losses.mean_squared_error,
            optimizer=pnn.optim.SGD(lr=0.05), epochs=1, batch_size=5, seed=seed, progress=False,
        )
        outs.append(pnn.to_numpy(params[0]["W"]))
    assert not np.array_equal(*outs)


def test_fit_does_not_modify_callers_params(tb):
    X, Y = _small_problem(tb)
    model = pnn.Sequential(pnn.Linear(3, 4), pnn.ReLU(), pnn.Linear(4, 1))
    params = tb.init(model, seed=0)
    before = [pnn.to_numpy(a).copy() for a in pnn.tree_leaves(params)]
    new, _ = pnn.fit(model, params, X, Y, loss=pnn.losses.mean_squared_error,
                     optimizer=pnn.optim.Adam(), epochs=2, batch_size=8, progress=False)
    assert all(np.array_equal(a, pnn.to_numpy(b)) for a, b in zip(before, pnn.tree_leaves(params), strict=True))
    assert not all(np.array_equal(a, pnn.to_numpy(b)) for a, b in zip(before, pnn.tree_leaves(new), strict=True))


def test_early_stopping_returns_best_params(tb):
    X, Y = _small_problem(tb)
    model = pnn.Sequential(pnn.Linear(3, 1))
    params = tb.init(model, seed=0)
    # a learning rate this large diverges slowly: the best epoch is early
    best, history = pnn.fit(
        model, params, X, Y, loss=pnn.losses.mean_squared_error, optimizer=pnn.optim.SGD(lr=0.0),
        epochs=50, batch_size=40, shuffle=False, patience=3, progress=False,
    )
    assert len(history["loss"]) == 4  # no improvement at all with lr 0: stop after patience epochs
    assert np.array_equal(pnn.to_numpy(best[0]["W"]), pnn.to_numpy(params[0]["W"]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nonfinite_loss_raises_with_last_finite_params(tb):
    X, Y = _small_problem(tb)
    model = pnn.Sequential(pnn.Linear(3, 16), pnn.ReLU(), pnn.Linear(16, 1))
    params = tb.init(model, seed=0)
    with pytest.raises(pnn.NonFiniteError) as info:
        pnn.fit(model, params, X, Y * 1e3, loss=pnn.losses.sum_squared_error,
                optimizer=pnn.optim.SGD(lr=10.0), epochs=50, batch_size=40, progress=False)
    err = info.value
    assert "epoch" in str(err) and "step" in str(err)
    assert err.epoch >= 1
    leaves = [pnn.to_numpy(a) for a in pnn.tree_leaves(err.params)]
    assert all(np.isfinite(a).all() for a in leaves)


@pytest.mark.filterwarnings("ignore:overflow", "ignore:invalid")
def test_nonfinite_stop_returns_params_with_warning(tb):
    X, Y = _small_problem(tb)
    model = pnn.Sequential(pnn.Linear(3, 1))
    with pytest.warns(RuntimeWarning, match="NaN/inf"):
        params, history = pnn.fit(model, tb.init(model), X, Y * 1e3, loss=pnn.losses.sum_squared_error,
                                  optimizer=pnn.optim.SGD(lr=10.0), epochs=500, batch_size=40,
                                  progress=False, on_nonfinite="stop")
    assert len(history["loss"]) < 500
    assert np.isfinite(pnn.to_numpy(params[0]["W"])).all()


def test_predict_in_batches_equals_one_batch(tb):
    X, _ = _small_problem(tb, n=23)
    model = pnn.Sequential(pnn.Linear(3, 5), pnn.GELU(), pnn.Linear(5, 2))
    params = tb.init(model, seed=0)
    full = pnn.to_numpy(pnn.predict(model, params, X, batch_size=1000))
    parts = pnn.to_numpy(pnn.predict(model, params, X, batch_size=4))
    assert full.shape == (23, 2)
    np.testing.assert_allclose(parts, full, rtol=1e-6)


def test_progress_bar_shows_when_forced(tb, capsys):
    X, Y = _small_problem(tb)
    model = pnn.Sequential(pnn.Linear(3, 1))
    pnn.fit(model, tb.init(model), X, Y, loss=pnn.losses.mean_squared_error,
            optimizer=pnn.optim.SGD(lr=0.01), epochs=2, batch_size=10, progress=True)
    err = capsys.readouterr().err
    assert "8/8" in err  # 2 epochs x 4 steps
    pnn.fit(model, tb.init(model), X, Y, loss=pnn.losses.mean_squared_error,
            optimizer=pnn.optim.SGD(lr=0.01), epochs=2, batch_size=10)  # not a terminal: off
    assert capsys.readouterr().err == ""


def test_zero_epochs_returns_params_unchanged(tb):
    X, Y = _small_problem(tb)
    model = pnn.Sequential(pnn.Linear(3, 1))
    params = tb.init(model)
    out, history = pnn.fit(model, params, X, Y, loss=pnn.losses.mean_squared_error,
                           optimizer=pnn.optim.SGD(), epochs=0, progress=False)
    assert out is params and history == {"loss": []}


def test_compiled_step_matches_portable_step(tb):
    """compile_step (jax.jit on JAX, portable elsewhere) agrees with the portable path to rounding."""
    X, Y = _small_problem(tb)
    model = pnn.Sequential(pnn.Linear(3, 8), pnn.GELU(), pnn.LayerNorm(8), pnn.Linear(8, 1))
    params0 = tb.init(model, seed=0)
    results = []
    for compile in (False, None):
        step = pnn.compile_step(model, pnn.losses.mean_squared_error, pnn.optim.Adam(lr=1e-2), compile=compile)
        params, state = params0, step.optimizer.init(params0)
        Xb, Yb = tb.asarray(X, dtype=tb.float), tb.asarray(Y, dtype=tb.float)
        losses = []
        for _ in range(5):
            params, state, loss = step(params, state, Xb, Yb)
            losses.append(float(loss))
        results.append((losses, [pnn.to_numpy(a) for a in pnn.tree_leaves(params)]))
    rtol = 1e-10 if tb.float == "float64" else 1e-4
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=rtol)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    assert results[0][0][-1] < results[0][0][0]


def test_torch_compile_step_and_fit_match_the_portable_code(tb):
    """compile=True on torch runs torch.compile; steps and a whole fit agree with the eager code."""
    if tb.be.name != "torch":
        pytest.skip("torch.compile runs on the torch backend only")
    rng = np.random.default_rng(5)
    X, y = tb.asarray(rng.standard_normal((32, 6)), dtype=tb.float), tb.asarray(rng.integers(0, 3, 32))
    model = pnn.Sequential(pnn.Linear(6, 16), pnn.ReLU(), pnn.Linear(16, 3))
    params0 = tb.init(model, seed=1)
    loss, opt = pnn.losses.softmax_cross_entropy, pnn.optim.SGD(lr=0.1, momentum=0.9)
    runs = {}
    for compile in (False, True):
        step = pnn.compile_step(model, loss, opt, compile=compile)
        assert step.compiler(X) == ("torch.compile" if compile else None)
        params, state, losses = params0, opt.init(params0), []
        for _ in range(4):
            params, state, value = step(params, state, X, y)
            losses.append(float(value))
        fitted, history = pnn.fit(model, params0, X, y, loss=loss, optimizer=opt, epochs=2, batch_size=8,
                                  compile=compile, progress=False)
        runs[compile] = losses, params, history["loss"], fitted
    rtol = 1e-10 if tb.float == "float64" else 1e-5
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=rtol)
    np.testing.assert_allclose(runs[True][2], runs[False][2], rtol=rtol)
    for i in (1, 3):
        for a, b in zip(pnn.tree_leaves(runs[True][i]), pnn.tree_leaves(runs[False][i]), strict=True):
            np.testing.assert_allclose(pnn.to_numpy(a), pnn.to_numpy(b), rtol=rtol, atol=rtol)
    assert runs[True][0][-1] < runs[True][0][0]


def test_compile_true_needs_jax_and_no_dropout(tb):
    model = pnn.Sequential(pnn.Linear(3, 2), pnn.Dropout(0.5))
    step = pnn.compile_step(model, pnn.losses.mean_squared_error, pnn.optim.SGD(), compile=True)
    params = tb.init(model)
    X = tb.asarray(np.ones((4, 3)), dtype=tb.float)
    with pytest.raises(ValueError, match="JAX or torch arrays|Dropout"):
        step(params, step.optimizer.init(params), X, tb.asarray(np.ones((4, 2)), dtype=tb.float))
    with pytest.raises(TypeError, match="compile"):
        pnn.compile_step(model, pnn.losses.mean_squared_error, pnn.optim.SGD(), compile="yes")


@pytest.fixture
def scan_traces(monkeypatch):
    """A list that grows each time JAX traces (so compiles) fit's whole-epoch loop."""
    from portable_nn.training import _scan

    traces, real = [], _scan._epochs

    def counting(*args):
        traces.append(1)
        return real(*args)

    monkeypatch.setattr(_scan, "_epochs", counting)
    return traces


@pytest.mark.parametrize("n", [48, 45])
def test_fit_compiled_loop_matches_step_by_step(tb, n, scan_traces):
    """On JAX, fit runs whole epochs (and a smaller last batch) as one compiled loop; it agrees with the portable loop."""
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((n, 5)), rng.integers(0, 3, n)
    model = pnn.Sequential(pnn.Linear(5, 16), pnn.Tanh(), pnn.Linear(16, 3))
    params0 = tb.init(model, seed=2)
    runs = []
    for compile in (False, None):
        params, history = pnn.fit(
            model, params0, X, y, loss=pnn.losses.softmax_cross_entropy, optimizer=pnn.optim.Adam(lr=1e-2),
            epochs=4, batch_size=8, seed=7, progress=False, compile=compile,
        )
        runs.append((params, history))
        if tb.be.name == "jax" and compile is None:
            assert scan_traces, "fit on JAX should run the compiled whole-epoch loop"
    (p1, h1), (p2, h2) = runs
    rtol = 1e-9 if tb.float == "float64" else 1e-4
    assert h1.keys() == h2.keys() == {"loss", "accuracy", "lr"}
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=rtol)
    assert h1["accuracy"] == h2["accuracy"]
    for a, b in zip(pnn.tree_leaves(p1), pnn.tree_leaves(p2), strict=True):
        np.testing.assert_allclose(pnn.to_numpy(a), pnn.to_numpy(b), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_fit_equals_the_functional_steps_bit_for_bit(tb, opt):
    """fit's steps are compile_step's portable steps: the result is bit for bit theirs."""
    X, Y = _small_problem(tb)
    model = pnn.Sequential(pnn.Linear(3, 8), pnn.ReLU(), pnn.Linear(8, 1))
    params = tb.init(model, seed=2)
    optimizer = {"sgd": pnn.optim.SGD(lr=0.05), "momentum": pnn.optim.SGD(lr=0.05, momentum=0.9),
                 "adam": pnn.optim.Adam(lr=0.01)}[opt]
    fitted, history = pnn.fit(model, params, X, Y, loss=pnn.losses.mean_squared_error, optimizer=optimizer,
                              epochs=3, batch_size=8, shuffle=False, progress=False, compile=False)
    step = pnn.compile_step(model, pnn.losses.mean_squared_error, optimizer, compile=False)
    p, s = params, optimizer.init(params)
    Xb, Yb = tb.asarray(X, dtype=tb.float), tb.asarray(Y, dtype=tb.float)
    for _ in range(3):
        for i in range(0, Xb.shape[0], 8):
            p, s, _ = step(p, s, Xb[i:i + 8, ...], Yb[i:i + 8, ...])
    for a, b in zip(pnn.tree_leaves(fitted), pnn.tree_leaves(p), strict=True):
        assert np.array_equal(pnn.to_numpy(a), pnn.to_numpy(b))
    assert history["loss"][-1] < history["loss"][0]


def test_early_stopping_keeps_the_best_epochs_params_while_training_goes_on(tb):
    """The best params are the best epoch's: later updates never reach them."""
    X, Y = _small_problem(tb)
    model = pnn.Sequential(pnn.Linear(3, 1))
    params = tb.init(model, seed=0)
    # validation targets of the opposite sign: the validation loss is best after the first epoch
    kwargs = dict(loss=pnn.losses.mean_squared_error, optimizer=pnn.optim.SGD(lr=0.05), batch_size=8,
                  shuffle=False, progress=False, compile=False)
    best, history = pnn.fit(model, params, X, Y, epochs=20, patience=2, validation_data=(X, -Y), **kwargs)
    assert len(history["loss"]) == 3 and history["val_loss"][0] < history["val_loss"][1]
    after_one, _ = pnn.fit(model, params, X, Y, epochs=1, **kwargs)
    for a, b in zip(pnn.tree_leaves(best), pnn.tree_leaves(after_one), strict=True):
        assert np.array_equal(pnn.to_numpy(a), pnn.to_numpy(b))


def test_fit_on_jax_reuses_the_compiled_loop_across_calls(tb, scan_traces):
    """A second fit with the same model, loss, optimizer settings and shapes does not recompile."""
    if tb.be.name != "jax":
        pytest.skip("the compiled whole-epoch loop runs on JAX only")
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    model = pnn.Sequential(pnn.Linear(5, 7), pnn.ReLU(), pnn.Linear(7, 3))
    params0 = tb.init(model, seed=0)
    kwargs = dict(loss=pnn.losses.softmax_cross_entropy, epochs=2, batch_size=16, progress=False)
    pnn.fit(model, params0, X, y, optimizer=pnn.optim.Adam(lr=1e-2), **kwargs)
    assert len(scan_traces) == 1
    pnn.fit(model, params0, X, y, optimizer=pnn.optim.Adam(lr=1e-2), **kwargs)  # an equal optimizer
    assert len(scan_traces) == 1
    pnn.fit(model, params0, X, y, optimizer=pnn.optim.Adam(lr=2e-2), **kwargs)  # another one: compiles
    assert len(scan_traces) == 2
    leaky = pnn.Sequential(pnn.Linear(5, 7), pnn.LeakyReLU(0.1), pnn.Linear(7, 3))
    first, _ = pnn.fit(leaky, params0, X, y, optimizer=pnn.optim.Adam(lr=1e-2), **kwargs)
    leaky.layers[1].alpha = 0.5  # a setting changed in place: the compiled loop must not be reused
    second, _ = pnn.fit(leaky, params0, X, y, optimizer=pnn.optim.Adam(lr=1e-2), **kwargs)
    assert len(scan_traces) == 4
    assert not np.array_equal(pnn.to_numpy(first[0]["W"]), pnn.to_numpy(second[0]["W"]))
    assert pnn.optim.Adam(lr=1e-2) == pnn.optim.Adam(lr=1e-2) != pnn.optim.SGD(lr=1e-2)
