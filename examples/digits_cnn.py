"""A CNN on the digits
===================

Train a small CNN on scikit-learn's bundled digits as 1x8x8 images (no download) and report test accuracy.

The split is examples/digits.py's (75/25, random_state=0), so the accuracy
compares with that MLP's. ``--plot FILE`` also writes the first 24 test images
with the digit the CNN predicts for each (mistakes in red) and the loss per epoch. ::

    python examples/digits_cnn.py                               # NumPy
    python examples/digits_cnn.py --backend array_api_strict    # or torch, jax, cupy, auto
    python examples/digits_cnn.py --plot cnn.png                # needs matplotlib
"""

from __future__ import annotations

from typing import Any

import numpy as np
from digits import Plot, arguments, draw_history, figure, fit_and_score, report  # beside this file

import portable_nn as pnn
from portable_nn.tools.arguments import positive_int
from portable_nn.tools.plotting import checked_plot_path

# gallery-args: --epochs 2 --width 8 --plot {plot}


def load_images() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X_train (1347, 1, 8, 8), X_test (450, 1, 8, 8), y_train, y_test)``, standardized on the training part.

    One mean and one standard deviation for all pixels: per-pixel scaling
    would distort the images' shapes, which the convolutions look at.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    mean, std = X_train.mean(), X_train.std()
    return (
        ((X_train - mean) / std).reshape(-1, 1, 8, 8),
        ((X_test - mean) / std).reshape(-1, 1, 8, 8),
        np.asarray(y_train, dtype=np.int64),
        np.asarray(y_test, dtype=np.int64),
    )


def make_model(width: int = 32) -> pnn.Sequential:
    """(N, 1, 8, 8) -> conv 3x3, ReLU -> (N, width, 8, 8) -> 2x2 max-pool -> (N, width, 4, 4)
    -> conv 3x3, ReLU -> (N, 2 width, 4, 4) -> flatten -> (N, 32 width) -> 10 logits."""
    return pnn.Sequential(
        pnn.Conv2D(1, width, 3, padding=1),
        pnn.ReLU(),
        pnn.MaxPool2D(2),
        pnn.Conv2D(width, 2 * width, 3, padding=1),
        pnn.ReLU(),
        pnn.Flatten(),
        pnn.Linear(2 * width * 4 * 4, 10),
    )


def train(
    backend: str = "numpy",
    *,
    epochs: int = 20,
    width: int = 32,
    dtype: str = "float32",
    seed: int = 0,
    progress: bool | None = None,
    plot: Plot | None = None,
) -> tuple[float, float]:
    """Train on ``backend`` as examples/digits.py does (Adam 3e-3, batches of 32); return (test accuracy, wall seconds)."""
    return fit_and_score(
        make_model(width), backend, load_images(), epochs=epochs, dtype=dtype, seed=seed, progress=progress, plot=plot
    )


def predictions(path: str, shown: int = 24) -> Plot:
    """A ``plot`` that writes the first ``shown`` test images with the predicted digits, and the loss curve."""

    def plot(model: pnn.Layer, params: Any, history: dict[str, list[float]], data: Any) -> None:
        _, X_test, _, y_test = data
        predicted = np.argmax(pnn.to_numpy(pnn.predict(model, params, X_test[:shown])), axis=1)
        fig = figure(11, 4.2)
        images, curve = fig.subfigures(1, 2, width_ratios=[1.5, 1])
        axes = images.subplots(3, shown // 3).flat
        for ax, image, guess, truth in zip(axes, X_test, predicted, y_test, strict=False):  # the first `shown`
            ax.imshow(image[0], cmap="gray_r")
            ax.set_title(f"{guess}" if guess == truth else f"{guess} (is {truth})",
                         color="black" if guess == truth else "red", fontsize="medium")
            ax.set_axis_off()
        images.suptitle("predicted digit of the first test images (red: wrong)")
        draw_history(curve.subplots(), history)
        fig.savefig(path, dpi=100)

    return plot


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, epochs=20, plot_help="the first 24 test images with their predicted digits")
    parser.add_argument("--width", type=positive_int, default=32, help="channels of the first conv (the second has twice)")
    args = parser.parse_args(argv)
    path = checked_plot_path(parser, args.plot)
    plot = None if path is None else predictions(path)
    report(args.backend, *train(args.backend, epochs=args.epochs, width=args.width, dtype=args.dtype, plot=plot))


if __name__ == "__main__":
    main()
