"""examples/char_lm.py: a tiny run on the backend under test, and its command-line errors (exit 2)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "char_lm.py"
TINY = ["--steps", "3", "--epochs", "1", "--dim", "16", "--layers", "1", "--heads", "2", "--context", "16",
        "--sample", "20"]


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("char_lm", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["char_lm"] = module
    spec.loader.exec_module(module)
    return module


def test_a_tiny_run_prints_bits_per_character_and_a_sample(tb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    spec = "numpy" if tb.spec == "numpy-readonly" else tb.spec
    result = load().main([*TINY, "--backend", spec])
    out = capsys.readouterr().out
    assert "unigram model:" in out and "bits/char" in out and "sample (temperature 0.8):" in out
    assert result["sample"].startswith("The ") and len(result["sample"]) == 4 + 20
    assert 0 < result["val_bits"] < 8 and 4 < result["unigram_bits"] < 6


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--backend", "nope"], "unknown backend 'nope'"),
        (["--dim", "10", "--heads", "4"], "--dim (10) must be a multiple of --heads (4)"),
        (["--steps", "0"], "argument --steps: expected a whole number >= 1, got 0"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        load().main(argv)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err
