"""Command lines treat a typo alike: ``python -m portable_nn``, every example and every script print
a usage line and one ``error:`` line and exit with status 2, before any work; help texts list
everything the code's own tables hold.

The argument checks do not depend on the backend the suite runs on: the subprocess tests run in the
numpy session only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from portable_nn.__main__ import build_parser
from portable_nn.tools.arguments import backend_arg, backend_list_arg
from portable_nn.tools.problems import PROBLEMS, SUMMARIES

REPO = Path(__file__).resolve().parents[1]
# found by glob, so a new example or script is covered as soon as it lands
SCRIPTS = sorted(
    [*REPO.glob("examples/*.py"), *REPO.glob("scripts/*.py"), *REPO.glob("scripts/*.sh")],
    key=lambda p: str(p.relative_to(REPO)),
)


@pytest.fixture
def numpy_session(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--backend") != "numpy":
        pytest.skip("argument parsing does not depend on the backend: run in the numpy session only")


TYPO = ["--backend", "nmupy"]


def _typo_says(path: Path) -> tuple[str, ...]:
    """What the error line may say about :data:`TYPO`: an unknown backend where the script defines
    ``--backend`` (``--backends`` takes it as an abbreviation), else an unrecognized argument (a script
    that takes ``--backend`` from a module beside it, as digits_cnn.py does, may say either)."""
    text = path.read_text()
    if '"--backend"' in text or '"--backends"' in text:
        return ("unknown backend 'nmupy'",)
    return ("unknown backend 'nmupy'", "unrecognized argument")


def _run(path: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    command = ["bash", str(path)] if path.suffix == ".sh" else [sys.executable, str(path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def _assert_usage_error(proc: subprocess.CompletedProcess[str], *says: str) -> None:
    """Exit status 2, the usage, then one ``error:`` line saying one of ``says``; no traceback, no output."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and errors[0] == lines[-1], proc.stderr  # one line, after the usage
    assert any(s in errors[0] for s in says), errors[0]
    assert lines[0].startswith("usage:"), proc.stderr
    assert proc.stdout == ""


def test_scripts_are_found() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"digits.py", "seed_tutorial.py", "gpu_check.sh", "fetch_gpu_wheels.sh"} <= names


@pytest.mark.parametrize("path", SCRIPTS, ids=[str(p.relative_to(REPO)) for p in SCRIPTS])
def test_a_typo_is_a_usage_error_before_any_work(path: Path, numpy_session: None) -> None:
    _assert_usage_error(_run(path, TYPO), *_typo_says(path))


def test_a_backend_that_cannot_run_here_is_a_usage_error(numpy_session: None) -> None:
    # a known name with no such device (anywhere): the message says which devices there are. The
    # single-backend scripts share backend_arg (unit-tested below); one of them is enough here
    proc = _run(REPO / "examples" / "digits.py", ["--backend", "numpy:gpu", "--epochs", "1"])
    _assert_usage_error(proc, "backend 'numpy' has no device 'gpu'; devices here: cpu")


def test_backend_arg_tells_a_typo_from_a_backend_not_usable_here() -> None:
    assert backend_arg(" numpy ") == "numpy"
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown backend 'nmupy'; choose one of numpy, cupy"):
        backend_arg("nmupy")
    with pytest.raises(argparse.ArgumentTypeError, match=r"backend 'numpy' has no device 'gpu'; devices here: cpu"):
        backend_arg("numpy:gpu")
    # a list takes known names whether installed or not (a comparison reports the missing ones)
    assert backend_list_arg("numpy,cupy:cuda:1,numpy") == ["numpy", "cupy:cuda:1"]
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown backend 'jaxx'.*in 'numpy,jaxx:gpu'"):
        backend_list_arg("numpy,jaxx:gpu")


def test_compare_help_lists_every_problem(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["compare", "--help"])
    assert exit_info.value.code == 0
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines (and breaks at hyphens)
    assert set(PROBLEMS) == {"seed", "digits", "mlp", "cnn", "gpt"} == set(SUMMARIES)
    for name, summary in SUMMARIES.items():
        assert "".join(f"{name}: {summary}".split()) in text, name
    assert "".join("float32 for digits, mlp, cnn".split()) in text
