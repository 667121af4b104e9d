"""Command line: ``python -m benchmarks [--quick] [--cases a,b] [--json FILE] ...`` (from a source checkout).

The cases, their one-line help and the default set come from :data:`benchmarks.runner.CASES`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from portable_nn.tools.arguments import backend_list_arg, positive_int, unwritable

from ._common import LIBRARIES
from ._result import CaseResult
from .runner import CASES, DEFAULT_CASES, run_bench

__all__ = ["build_parser", "main"]

PROG = "python -m benchmarks"


def _case_list(text: str) -> list[str]:
    cases = [s.strip().lower() for s in text.split(",")]
    bad = [c for c in cases if c not in CASES]
    if not cases or bad:
        raise argparse.ArgumentTypeError(f"expected comma-separated cases from {','.join(CASES)}, got {text!r}")
    return list(dict.fromkeys(cases))


def _library_list(text: str) -> list[str]:
    libs = [s.strip().lower() for s in text.split(",") if s.strip()]
    libs = ["sklearn" if s in ("scikit-learn", "scikit_learn") else s for s in libs]
    bad = [s for s in libs if s not in (*LIBRARIES, "numpy")]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown backend(s) {', '.join(bad)}; choose from numpy,{','.join(LIBRARIES)}"
        )
    return [s for s in dict.fromkeys(libs) if s != "numpy"]  # numpy, the reference, always runs


def _cases_help() -> str:
    """One line per case, from the table."""
    lines = [f"  {key}  {case.summary}{'' if case.default else ' (only when named)'}" for key, case in CASES.items()]
    return "cases:\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m benchmarks`` parser."""
    p = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the cases: one line each
        description=(
            "Time portable_nn against hand-written NumPy, the matmuls alone, PyTorch, JAX and scikit-learn.\n"
            "Each case runs in its own process; its candidates are warmed up and timed round-robin,\n"
            "synchronized, and the median of the repeats is reported with its spread (IQR/median).\n"
            "Prints one table per case with the targets marked met or missed."
        ),
        epilog=_cases_help() + "\n\nSpeed is measured, never asserted: a busy machine skews it.",
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (about two minutes)")
    p.add_argument(
        "--json", metavar="FILE", help="also write every measurement, target and the environment as JSON"
    )
    opt_in = [key for key in CASES if key not in DEFAULT_CASES]
    p.add_argument(
        "--cases",
        type=_case_list,
        default=list(DEFAULT_CASES),
        metavar="LIST",
        help=f"comma-separated cases to run (default: {','.join(DEFAULT_CASES)}"
        + (f"; {','.join(opt_in)} only when named)" if opt_in else ")"),
    )
    p.add_argument(
        "--backends",
        type=_library_list,
        default=None,
        metavar="LIST",
        help=f"comparison libraries among {','.join(LIBRARIES)} (numpy always runs; default: all installed)",
    )
    p.add_argument(
        "--device-backend",
        dest="device_backends",
        type=backend_list_arg,
        action="extend",
        default=[],
        metavar="SPEC",
        help="also run portable_nn on this backend in cases a, b, c and g (repeatable or comma-separated: "
        "cupy,torch:cuda,jax:gpu; torch,array_api_strict for a dry run on a CPU), next to PyTorch eager "
        "on CUDA when torch sees a GPU, with the GPU targets",
    )
    p.add_argument("--repeats", type=positive_int, default=None, metavar="R", help="timed repeats per candidate")
    p.add_argument(
        "--threads",
        type=positive_int,
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 when every case ran (targets may be missed), 1 when something failed,
    2 for bad arguments or an unwritable ``--json`` path."""
    args = build_parser().parse_args(argv)
    bad = unwritable(("--json", args.json))
    if bad is not None:
        print(f"{PROG}: error: {bad}", file=sys.stderr)
        return 2

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


if __name__ == "__main__":
    sys.exit(main())
