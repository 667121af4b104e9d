"""An MLP on the digits
====================

Train a 64-128-10 MLP on scikit-learn's bundled digits (no download) and report test accuracy.

``--plot FILE`` also writes the training and test loss and the test accuracy per epoch as a PNG. ::

    python examples/digits.py                               # NumPy
    python examples/digits.py --backend array_api_strict    # or torch, jax, cupy, auto
    python examples/digits.py --plot digits.png             # needs matplotlib
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import portable_nn as pnn
from portable_nn.tools.arguments import backend_arg, positive_int
from portable_nn.tools.plotting import checked_plot_path
from portable_nn.tools.problems import (
    load_digits_data as load_data,  # standardized, 75/25 split, random_state=0
)

# gallery-args: --epochs 10 --plot {plot}

Plot = Callable[[pnn.Layer, Any, dict[str, list[float]], tuple[Any, Any, Any, Any]], None]


def fit_and_score(
    model: pnn.Layer,
    backend: str | pnn.Backend,
    data: tuple[Any, Any, Any, Any],
    *,
    epochs: int,
    dtype: str = "float32",
    seed: int = 0,
    progress: bool | None = None,
    plot: Plot | None = None,
) -> tuple[float, float]:
    """Train ``model`` on ``data = (X_train, X_test, y_train, y_test)`` with Adam; return (test accuracy, wall seconds).

    ``plot(model, params, history, data)``, when given, is called after training (outside the timing).
    """
    be = pnn.get_backend(backend)
    X_train, X_test, y_train, y_test = data
    params = model.init(seed=seed, backend=be, dtype=dtype)
    start = time.perf_counter()
    params, history = pnn.fit(
        model,
        params,
        X_train,
        y_train,
        loss=pnn.losses.softmax_cross_entropy,
        optimizer=pnn.optim.Adam(lr=3e-3),
        epochs=epochs,
        batch_size=32,
        seed=seed,
        validation_data=(X_test, y_test),
        progress=progress,
    )
    be.synchronize(params)
    seconds = time.perf_counter() - start
    if plot is not None:
        plot(model, params, history, data)
    return history["val_accuracy"][-1], seconds


def train(
    backend: str = "numpy",
    *,
    epochs: int = 30,
    dtype: str = "float32",
    seed: int = 0,
    progress: bool | None = None,
    plot: Plot | None = None,
) -> tuple[float, float]:
    """Train on ``backend``; return (test accuracy, wall seconds)."""
    model = pnn.Sequential(pnn.Linear(64, 128), pnn.ReLU(), pnn.Linear(128, 10))
    data = load_data()
    return fit_and_score(model, backend, data, epochs=epochs, dtype=dtype, seed=seed, progress=progress, plot=plot)


def arguments(doc: str, epochs: int, plot_help: str) -> argparse.ArgumentParser:
    """The command line both digits examples share: --backend, --epochs, --dtype, --plot.

    A backend that is unknown or not usable here is a usage error (exit status 2), as in
    ``python -m portable_nn``, before anything is trained.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[1])  # the line under the title
    parser.add_argument("--backend", type=backend_arg, default="numpy", help="numpy, torch, jax, cupy, auto...")
    parser.add_argument("--epochs", type=positive_int, default=epochs)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--plot", metavar="FILE", help=f"also write {plot_help} as a PNG (needs matplotlib)")
    return parser


def figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot state, no GUI)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def draw_history(ax: Any, history: dict[str, list[float]]) -> None:
    """Training and test loss per epoch on ``ax``, the test accuracy on a second y axis."""
    epochs = range(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], marker="o", label="training loss")
    ax.plot(epochs, history["val_loss"], marker="o", label="test loss")
    ax.set(xlabel="epoch", ylabel="softmax cross-entropy", yscale="log", title="loss per epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    right = ax.twinx()
    right.plot(epochs, history["val_accuracy"], color="C2", marker="s", label="test accuracy")
    right.set_ylabel("test accuracy")
    lines = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(lines, [line.get_label() for line in lines], loc="center right")
    ax.grid(True, alpha=0.3)


def loss_curve(path: str) -> Plot:
    """A ``plot`` for :func:`fit_and_score` that writes the history's curves to ``path``."""

    def plot(model: pnn.Layer, params: Any, history: dict[str, list[float]], data: Any) -> None:
        fig = figure(7, 4)
        draw_history(fig.subplots(), history)
        fig.savefig(path, dpi=100)

    return plot


def report(backend: str, accuracy: float, seconds: float) -> None:
    print(f"backend {pnn.get_backend(backend)}: test accuracy {accuracy:.4f}, wall time {seconds:.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, epochs=30, plot_help="the loss and accuracy per epoch")
    args = parser.parse_args(argv)
    path = checked_plot_path(parser, args.plot)
    plot = None if path is None else loss_curve(path)
    report(args.backend, *train(args.backend, epochs=args.epochs, dtype=args.dtype, plot=plot))


if __name__ == "__main__":
    main()
