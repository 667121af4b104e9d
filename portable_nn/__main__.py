"""Command line: ``python -m portable_nn COMMAND ...`` (also installed as ``portable-nn``).

Each command is a subparser with its own ``add_*_command`` and handler; to add
one, write both and call the adder in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .tools.arguments import backend_list_arg, nonnegative_int, positive_int, unwritable
from .tools.problems import DEFAULT_STEPS, PROBLEMS, SUMMARIES, default_dtype

__all__ = ["build_parser", "main"]

PROG = "python -m portable_nn"


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
        type=backend_list_arg,
        default=None,
        metavar="LIST",
        help="comma-separated backend specs (default: every backend installed here)",
    )
    problems = "; ".join(f"{name}: {summary}" for name, summary in SUMMARIES.items())
    p.add_argument("--problem", choices=PROBLEMS, default="seed", help=f"{problems} (default: %(default)s)")
    by_dtype = {d: ", ".join(n for n in PROBLEMS if default_dtype(n) == d) for d in ("float64", "float32")}
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="default: " + "; ".join(f"{d} for {names}" for d, names in by_dtype.items() if names),
    )
    p.add_argument(
        "--precision",
        choices=("bfloat16", "float16"),
        default=None,
        help="mixed precision: float32 params, forward and backward in this dtype, as fit(precision=...); "
        "backends without it are listed as missing (default: none)",
    )
    steps = ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items())
    p.add_argument("--steps", type=positive_int, default=None, metavar="N", help=f"training steps ({steps})")
    p.add_argument(
        "--hidden", type=positive_int, default=512, metavar="H", help="mlp hidden width (default: 512)"
    )
    p.add_argument(
        "--batch", type=positive_int, default=256, metavar="B", help="mlp batch size (default: 256)"
    )
    p.add_argument("--repeats", type=positive_int, default=5, metavar="R", help="timed repeats (default: 5)")
    p.add_argument(
        "--warmup", type=nonnegative_int, default=10, metavar="W", help="untimed warm-up steps (default: 10)"
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
    from .tools.compare import run_comparison
    from .tools.plotting import require_matplotlib, write_plot

    bad = unwritable(("--json", args.json), ("--plot", args.plot))
    if bad is not None:
        return _fail(bad)
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
        precision=args.precision,
    )
    print(result.table(), flush=True)
    if args.json is not None:
        result.write_json(args.json)
        print(f"wrote {args.json}")
    if args.plot is not None and result.results:
        write_plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 1 if result.failed or not result.results else 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m portable_nn`` parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="portable_nn: one neural-network library on NumPy, CuPy, PyTorch, JAX and array-api-strict.",
    )
    parser.add_argument("--version", action="version", version=f"portable_nn {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command", required=True)
    add_compare_command(commands)
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
