"""The "Writing a layer" guide's PReLU example (docs/guide/writing-a-layer.md), run exactly as written, on every backend."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import portable_nn as pnn

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "writing-a-layer.md"


def _example() -> str:
    text = PAGE.read_text()
    found = re.search(r"<!-- docs-layer-example -->\n```python\n(.*?)\n```", text, re.S)
    assert found, f"{PAGE} lost its layer example (the marker <!-- docs-layer-example -->)"
    return found.group(1)


def test_guide_layer_example_runs_and_trains(tb, capsys):
    if "float64" not in tb.dtypes:
        pytest.skip("the example uses float64 for its gradcheck")
    namespace: dict = {}
    with pnn.use_backend(tb.be):
        exec(compile(_example(), str(PAGE), "exec"), namespace)  # noqa: S102 (our own docs)
    history = namespace["history"]
    assert history["loss"][-1] < history["loss"][0] / 2
    assert re.fullmatch(r"loss \d+\.\d{4} -> \d+\.\d{4}\n", capsys.readouterr().out)
    # the layer's errors are the library's: wrong params and wrong input name the layer
    PReLU, be = namespace["PReLU"], namespace["be"]
    layer = PReLU(4)
    with pytest.raises(ValueError, match=r"PReLU.*params do not fit this layer: expected a \(4,\)"):
        layer(layer.init(backend=be) | {"a": be.asarray(np.ones(3, dtype="float32"))}, be.asarray(np.ones((2, 4))))
    with pytest.raises(ValueError, match=r"X must have 2 dimensions \(batch, features\)"):
        layer(layer.init(backend=be), be.asarray(np.ones(4, dtype="float32")))
