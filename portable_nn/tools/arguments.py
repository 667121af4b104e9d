"""Command-line arguments shared by ``python -m portable_nn``, the benchmarks, the examples and scripts.

Each ``*_arg`` function is an argparse ``type=``: it returns the parsed value or
raises ``argparse.ArgumentTypeError``, which argparse prints as a one-line
usage error (exit status 2) naming the option, before any work is done::

    parser.add_argument("--backend", type=backend_arg, default="numpy")
    # python examples/digits.py --backend nmupy
    # digits.py: error: argument --backend: unknown backend 'nmupy'; choose one of numpy, cupy, ...

:func:`backend_arg` takes a backend this script can use now (a known name whose
library is installed, with that device); :func:`backend_list_arg` takes known
names whether installed or not (a comparison reports the missing ones).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from .. import BackendError
from ..backends import backend_name, get_backend

__all__ = [
    "backend_arg",
    "backend_list_arg",
    "int_at_least",
    "nonnegative_int",
    "positive_int",
    "unwritable",
]


def backend_arg(text: str) -> str:
    """A backend spec usable here (``numpy``, ``torch:cuda``, ``auto``...), returned as given.

    An unknown name fails with the known ones listed; a known backend whose
    library is not installed (or that has no such device) fails with what to
    install (or the devices there are). Checking the device imports the library.
    """
    try:
        get_backend(text.strip())
    except BackendError as e:  # unknown, not installed, no such device
        raise argparse.ArgumentTypeError(str(e)) from None
    return text.strip()


def backend_list_arg(text: str) -> list[str]:
    """Comma-separated backend specs whose library names are known (installed or not), without repeats.

    Nothing is imported: a typo fails at once, while a known backend that is not
    installed is left to the caller to report as missing.
    """
    specs = [s.strip() for s in text.split(",")]
    if not all(specs):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated backend specs such as numpy,torch,jax:gpu, got {text!r}"
        )
    for spec in specs:
        try:
            backend_name(spec)
        except BackendError as e:
            raise argparse.ArgumentTypeError(f"{e} (in {text!r})") from None
    return list(dict.fromkeys(specs))


def int_at_least(lo: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``lo``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {lo}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def unwritable(*options: tuple[str, str | None]) -> str | None:
    """Why the first of the ``(option, path)`` outputs that cannot be written cannot be, or None.

    For checking output files before any work; touches nothing. A path of None is skipped.
    """
    for option, path in options:
        problem = None if path is None else _output_problem(option, path)
        if problem is not None:
            return problem
    return None


def _output_problem(option: str, path: str) -> str | None:
    full = os.path.abspath(path)
    folder = os.path.dirname(full)
    if os.path.isdir(full):
        example = os.path.join(path, "results.png" if option == "--plot" else "results.json")
        return f"{option} {path}: that is a folder; give a file name, e.g. {example}."
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        return f"{option} {path}: {folder} {what}."
    if os.path.exists(full):
        if not os.access(full, os.W_OK):
            return f"{option} {path}: the file is not writable; choose another path or fix its permissions."
    elif not os.access(folder, os.W_OK | os.X_OK):
        return f"{option} {path}: the folder {folder} is not writable; choose another folder."
    return None
