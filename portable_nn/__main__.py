"""Command line: ``python -m portable_nn COMMAND ...`` (also installed as ``portable-nn``).

Each command is a subparser with its own ``add_*_command`` and handler; to add
one, write both and call the adder in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__
from ._errors import BackendError
from .backends import backend_name
from .tools.problems import DEFAULT_STEPS, PROBLEMS

__all__ = ["build_parser", "main"]

PROG = "python -m portable_nn"


def _int_at_least(lo: int) -> Callable[[str], int]:
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


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _backend_list(text: str) -> list[str]:
    """An argparse type: comma-separated backend specs whose library names are known (installed or not)."""
    specs = [s.strip() for s in text.split(",")]
    if not all(specs):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated backend specs such as numpy,torch,jax:gpu, got {text!r}"
        )
    for spec in specs:
        try:
            backend_name(spec)
        except BackendError as e:  # a typo: exit 2 now, not "missing" after the run
            raise argparse.ArgumentTypeError(f"{e} (in {text!r})") from None
    return list(dict.fromkeys(specs))


def _output_problem(option: str, path: str) -> str | None:
    """Why ``path`` cannot be written as ``option``'s output, or None. Checked before any work; touches nothing."""
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


def _check_outputs(*options: tuple[str, str | None]) -> int | None:
    """Exit status 2 (after printing why) when an output path cannot be written; None when all can."""
    for option, path in options:
        problem = None if path is None else _output_problem(option, path)
        if problem is not None:
            return _fail(problem)
    return None


def add_compare_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``compare`` subcommand: see :mod:`portable_nn.tools.compare`."""
    p = commands.add_parser(
        "compare",
        help="train one seeded model on several backends; time it and check it against NumPy",
        description=(
            "Train the same model from the same seed on each backend, time the steps "
            "(synchronized, after warm-up, median of repeats) and compare every step's loss "
            "and the final params with NumPy's. Prints one table."
        ),
        epilog=(
            "Backend specs: numpy, array_api_strict, torch, torch:cuda, jax, jax:gpu, cupy, cupy:cuda:1. "
            "NumPy, the reference, always runs. Backends that are not installed (or lack the device) are "
            "reported as missing with how to install them; an unknown name is an error (exit status 2)."
        ),
    )
    p.add_argument(
        "--backends",
        type=_backend_list,
        default=None,
        metavar="LIST",
        help="comma-separated backend specs (default: every backend installed here)",
    )
    p.add_argument(
        "--problem",
        choices=PROBLEMS,
        default="seed",
        help="seed: the teaching notebook's 3-2-1 net; digits: 64-128-10 MLP on scikit-learn digits; "
        "mlp: synthetic 784-H-H-10 MLP (default: %(default)s)",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="default: float64 for seed, float32 for digits and mlp",
    )
    steps = ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items())
    p.add_argument("--steps", type=_positive_int, default=None, metavar="N", help=f"training steps ({steps})")
    p.add_argument(
        "--hidden", type=_positive_int, default=512, metavar="H", help="mlp hidden width (default: 512)"
    )
    p.add_argument(
        "--batch", type=_positive_int, default=256, metavar="B", help="mlp batch size (default: 256)"
    )
    p.add_argument("--repeats", type=_positive_int, default=5, metavar="R", help="timed repeats (default: 5)")
    p.add_argument(
        "--warmup", type=_nonnegative_int, default=10, metavar="W", help="untimed warm-up steps (default: 10)"
    )
    p.add_argument(
        "--eager",
        action="store_true",
        help="time the portable code op by op on every backend (default: as fit runs it, jax.jit on JAX)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results, losses and environment as JSON")
    p.add_argument(
        "--plot", metavar="FILE", help="also write a PNG (needs matplotlib: pip install 'portable_nn[plot]')"
    )
    p.set_defaults(handler=run_compare_command)


def run_compare_command(args: argparse.Namespace) -> int:
    """Run ``compare``; 0 when every available backend ran, 1 when one failed, 2 for bad output paths."""
    from .tools._compare_plot import require_matplotlib
    from .tools.compare import run_comparison

    bad = _check_outputs(("--json", args.json), ("--plot", args.plot))
    if bad is not None:
        return bad
    if args.plot is not None:
        try:
            require_matplotlib()
        except ModuleNotFoundError as e:
            return _fail(f"--plot: {e}")
    result = run_comparison(
        args.backends,
        args.problem,
        dtype=args.dtype,
        steps=args.steps,
        hidden=args.hidden,
        batch=args.batch,
        repeats=args.repeats,
        warmup=args.warmup,
        eager=args.eager,
    )
    print(result.table(), flush=True)
    if args.json is not None:
        result.write_json(args.json)
        print(f"wrote {args.json}")
    if args.plot is not None and result.results:
        result.write_plot(args.plot)
        print(f"wrote {args.plot}")
    return 1 if result.failed or not result.results else 0


_BENCH_CASES = ("a", "b", "c", "d", "e", "f", "g")
_BENCH_LIBRARIES = ("torch", "jax", "sklearn")


def _case_list(text: str) -> list[str]:
    cases = [s.strip().lower() for s in text.split(",")]
    bad = [c for c in cases if c not in _BENCH_CASES + ("h",)]  # h (Dask cluster) runs only when asked
    if not cases or bad:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated cases from {','.join(_BENCH_CASES)},h, got {text!r}"
        )
    return list(dict.fromkeys(cases))


def _library_list(text: str) -> list[str]:
    libs = [s.strip().lower() for s in text.split(",") if s.strip()]
    libs = ["sklearn" if s in ("scikit-learn", "scikit_learn") else s for s in libs]
    bad = [s for s in libs if s not in (*_BENCH_LIBRARIES, "numpy")]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown backend(s) {', '.join(bad)}; choose from numpy,{','.join(_BENCH_LIBRARIES)}"
        )
    return [s for s in dict.fromkeys(libs) if s != "numpy"]  # numpy, the reference, always runs


def add_bench_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``bench`` subcommand: see :mod:`portable_nn.tools.bench`."""
    p = commands.add_parser(
        "bench",
        help="benchmark portable_nn against hand-written NumPy, the GEMM limit, PyTorch, JAX, scikit-learn",
        description=(
            "Time portable_nn against hand-written NumPy, the matmuls alone, PyTorch, JAX and scikit-learn. "
            "Each case runs in its own process; its candidates are warmed up and timed round-robin, "
            "synchronized, and the median of the repeats is reported with its spread (IQR/median). "
            "Prints one table per case with the targets marked met or missed."
        ),
        epilog=(
            "Cases: a MLP training step 784-512-512-10; b the notebook's 3-2-1 net (us/step); "
            "c digits end to end to 0.97 accuracy; d GFLOP/s scaling over width and batch; "
            "e RSS of pnn.fit per epoch; f portable_nn.sklearn.MLPClassifier against scikit-learn's, equal epochs "
            "on digits. Speed is measured, never asserted: a busy machine skews it."
        ),
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (about two minutes)")
    p.add_argument(
        "--json", metavar="FILE", help="also write every measurement, target and the environment as JSON"
    )
    p.add_argument(
        "--cases",
        type=_case_list,
        default=list(_BENCH_CASES),
        metavar="LIST",
        help="comma-separated cases to run (default: a,b,c,d,e,f,g; h, data-parallel fit on a 2-worker Dask "
        "cluster, only when named)",
    )
    p.add_argument(
        "--backends",
        type=_library_list,
        default=None,
        metavar="LIST",
        help="comparison libraries among torch,jax,sklearn (numpy always runs; default: all installed)",
    )
    p.add_argument(
        "--device-backend",
        dest="device_backends",
        type=_backend_list,
        action="extend",
        default=[],
        metavar="SPEC",
        help="also run portable_nn on this backend in cases a, b, c and g (repeatable or comma-separated: "
        "cupy,torch:cuda,jax:gpu; torch,array_api_strict for a dry run on a CPU), next to PyTorch eager "
        "on CUDA when torch sees a GPU, with the GPU targets",
    )
    p.add_argument(
        "--repeats", type=_positive_int, default=None, metavar="R", help="timed repeats per candidate"
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="BLAS/OpenMP threads for the cases (default: as configured); torch always gets NumPy's BLAS "
        "thread count; JAX keeps its own pool",
    )
    p.add_argument(
        "--no-isolate",
        dest="isolate",
        action="store_false",
        help="run every case in this process instead of one fresh process per case",
    )
    p.set_defaults(handler=run_bench_command)


def run_bench_command(args: argparse.Namespace) -> int:
    """Run ``bench``; 0 when every case ran (targets may be missed), 1 when something failed, 2 for bad paths."""
    from .tools.bench import CaseResult, run_bench

    bad = _check_outputs(("--json", args.json))
    if bad is not None:
        return bad

    def show(result: CaseResult) -> None:
        print(result.table() + "\n", flush=True)

    report = run_bench(
        args.cases,
        profile="quick" if args.quick else "full",
        libraries=args.backends,
        repeats=args.repeats,
        isolate=args.isolate,
        threads=args.threads,
        device_backends=args.device_backends,
        on_case=show,
    )
    print(report.summary())
    for note in report.notes:
        print(note)
    if args.json is not None:
        report.write_json(args.json)
        print(f"wrote {args.json}")
    return 1 if report.failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m portable_nn`` parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="portable_nn: one neural-network library on NumPy, CuPy, PyTorch, JAX and array-api-strict.",
    )
    parser.add_argument("--version", action="version", version=f"portable_nn {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command", required=True)
    add_compare_command(commands)
    add_bench_command(commands)
    return parser


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return its exit status."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
