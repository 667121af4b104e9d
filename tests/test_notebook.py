"""The teaching notebook's printed loss table, reproduced by the library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import portable_nn as pnn

DATA = Path(__file__).parent / "data"
EXAMPLE = Path(__file__).parents[1] / "examples" / "seed_tutorial.py"


def _expected() -> dict:
    return json.loads((DATA / "seed_tutorial_expected.json").read_text())


def _notebook_run(tb, steps: int = 500) -> tuple[list[float], list]:
    setup = _expected()["setup"]
    rs = np.random.RandomState(setup["seed"])  # the notebook's legacy global RNG, same stream
    w1, w2 = rs.standard_normal((3, 2)), rs.standard_normal((2, 1))
    x = tb.asarray(setup["x"], dtype="float64")
    y = tb.asarray(setup["y"], dtype="float64")
    model = pnn.Sequential(pnn.Linear(3, 2, bias=False), pnn.ReLU(), pnn.Linear(2, 1, bias=False))
    params = [{"W": tb.asarray(w1)}, {}, {"W": tb.asarray(w2)}]
    opt = pnn.optim.SGD(lr=setup["learning_rate"])
    state = opt.init(params)
    losses = []
    for _ in range(steps):
        Y, backprop = model.apply(params, x, train=True)
        loss, dY = pnn.losses.sum_squared_error(Y, y)
        losses.append(float(loss))
        params, state = opt.step(params, backprop(dY)[1], state)
    return losses, params


def test_printed_table_matches_notebook_on_numpy_exactly(tb):
    if "float64" not in tb.dtypes:
        pytest.skip(f"{tb.spec} has no float64; the notebook table is float64")
    losses, params = _notebook_run(tb)
    printed = ["%d %.12g" % (t, v) for t, v in enumerate(losses)]
    table = (DATA / "seed_tutorial_table.txt").read_text().splitlines()
    assert len(table) == 500
    if tb.be.name == "numpy":
        assert printed == table  # character for character
    else:
        expected = np.array(_expected()["losses"])
        np.testing.assert_allclose(losses, expected, rtol=1e-9, atol=0)
    exp = _expected()
    np.testing.assert_allclose(pnn.to_numpy(params[0]["W"]), exp["final_w1"], atol=5e-9)
    np.testing.assert_allclose(pnn.to_numpy(params[2]["W"]), exp["final_w2"], atol=5e-9)


def test_fit_reproduces_the_table_with_one_full_batch(tb):
    """fit with batch_size = all 4 rows and no shuffle is the notebook's loop."""
    if "float64" not in tb.dtypes:
        pytest.skip(f"{tb.spec} has no float64")
    setup = _expected()["setup"]
    rs = np.random.RandomState(setup["seed"])
    w1, w2 = rs.standard_normal((3, 2)), rs.standard_normal((2, 1))
    model = pnn.Sequential(pnn.Linear(3, 2, bias=False), pnn.ReLU(), pnn.Linear(2, 1, bias=False))
    params = [{"W": tb.asarray(w1)}, {}, {"W": tb.asarray(w2)}]
    x = tb.asarray(setup["x"], dtype="float64")
    y = tb.asarray(setup["y"], dtype="float64")
    _, history = pnn.fit(
        model, params, x, y, loss=pnn.losses.sum_squared_error, optimizer=pnn.optim.SGD(lr=0.01),
        epochs=500, batch_size=4, shuffle=False, progress=False,
    )
    np.testing.assert_allclose(history["loss"], _expected()["losses"], rtol=1e-9, atol=0)


def test_example_script_prints_the_notebook_table():
    if not EXAMPLE.exists():
        pytest.fail("examples/seed_tutorial.py is missing")
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert out[:500] == (DATA / "seed_tutorial_table.txt").read_text().splitlines()
    assert "0.99992661" in "\n".join(out[500:])
