"""CPU vs GPU from Python
======================

CPU vs GPU from Python: the notebook's net and a wider MLP on every backend installed here.

The same machinery as ``python -m portable_nn compare``: each backend trains
the same model from the same seed; the table shows the median time per step,
the speedup over NumPy and how far each backend's losses and final params are
from NumPy's. On a machine with a CUDA GPU, pass e.g. ``--backends
numpy,cupy,torch:cuda,jax:gpu``. ``--plot FILE`` also writes the notebook problem's
figure, as ``python -m portable_nn compare --plot FILE`` does: the loss curves of all
backends, each one's deviation from NumPy per step, and the time per step. ::

    python examples/cpu_vs_gpu.py
    python examples/cpu_vs_gpu.py --backends numpy,torch:cuda --hidden 1024 --batch 512 --plot compare.png
"""

# gallery-args: --backends numpy,array_api_strict --mlp-steps 3 --hidden 64 --batch 32 --repeats 3 --plot {plot}

from __future__ import annotations

import argparse

import portable_nn as pnn
from portable_nn.tools.arguments import backend_list_arg, positive_int
from portable_nn.tools.compare import run_comparison
from portable_nn.tools.plotting import checked_plot_path, write_plot


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])  # the line under the title
    parser.add_argument(
        "--backends",
        type=backend_list_arg,  # an unknown name is a usage error; a known one not installed is reported missing
        default=None,
        help="comma-separated backend specs (default: every installed backend: %s)"
        % ",".join(pnn.available_backends()),
    )
    parser.add_argument("--seed-steps", type=positive_int, default=500, help="steps of the notebook problem")
    parser.add_argument("--mlp-steps", type=positive_int, default=20, help="steps of the MLP problem")
    parser.add_argument("--hidden", type=positive_int, default=256, help="MLP hidden width")
    parser.add_argument("--batch", type=positive_int, default=128, help="MLP batch size")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed repeats per backend")
    parser.add_argument(
        "--plot", metavar="FILE", help="also write the notebook problem's figure as a PNG (needs matplotlib)"
    )
    args = parser.parse_args(argv)
    checked_plot_path(parser, args.plot)  # before any work, as `compare --plot` does
    backends = args.backends

    seed = run_comparison(backends, "seed", dtype="float64", steps=args.seed_steps, repeats=args.repeats)
    print(seed.table(), end="\n\n")
    if args.plot is not None and seed.results:
        write_plot(seed, args.plot)
    mlp = run_comparison(
        backends,
        "mlp",
        dtype="float32",
        steps=args.mlp_steps,
        hidden=args.hidden,
        batch=args.batch,
        repeats=args.repeats,
    )
    print(mlp.table())

    for result in (seed, mlp):
        worst = max((r.loss_deviation or 0.0 for r in result.results), default=0.0)
        print(f"{result.problem}: largest relative loss deviation from NumPy {worst:.1e} ({result.dtype})")


if __name__ == "__main__":
    main()
