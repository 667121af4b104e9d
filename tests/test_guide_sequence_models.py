"""docs/guide/sequence-models.md: every ``python`` block runs as written (in order, one namespace),
on the backend under test."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import portable_nn as pnn

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "sequence-models.md"


def test_the_guide_s_examples_run(tb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    if "float64" not in tb.dtypes:
        pytest.skip("the Residual example runs a float64 gradcheck")
    if tb.be.name == "jax":
        pytest.skip("JAX compiles each operation the first time it sees it: about a minute for these examples "
                    "here; the same layers, fit and generate run on JAX in test_transformer.py and test_generate.py")
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert len(blocks) == 4, "the guide's runnable examples changed: update this test"
    namespace: dict[str, Any] = {}
    with pnn.use_backend(tb.be):
        for block in blocks:
            exec(compile(block, str(GUIDE), "exec"), namespace)  # noqa: S102 (our own docs)
    out = capsys.readouterr().out
    first, last = map(float, re.search(r"loss (\d+\.\d+) -> (\d+\.\d+) nats/char", out).groups())  # type: ignore[union-attr]
    assert last < first / 2, out
    assert out.splitlines()[1].startswith("hello ")  # the greedy sample starts with its prompt
    assert tuple(namespace["a"].shape) == (2, 13)
