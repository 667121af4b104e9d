"""Train a small CNN on scikit-learn's bundled digits as 1x8x8 images (no download) and report test accuracy.

python examples/digits_cnn.py                               # NumPy
python examples/digits_cnn.py --backend array_api_strict    # or torch, jax, cupy, auto

The split is examples/digits.py's (75/25, random_state=0), so the accuracy
compares with that MLP's.
"""

from __future__ import annotations

import numpy as np
from digits import arguments, fit_and_score, report  # examples/digits.py, beside this file

import portable_nn as pnn
from portable_nn.tools.arguments import positive_int


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
) -> tuple[float, float]:
    """Train on ``backend`` as examples/digits.py does (Adam 3e-3, batches of 32); return (test accuracy, wall seconds)."""
    return fit_and_score(
        make_model(width), backend, load_images(), epochs=epochs, dtype=dtype, seed=seed, progress=progress
    )


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, epochs=20)
    parser.add_argument("--width", type=positive_int, default=32, help="channels of the first conv (the second has twice)")
    args = parser.parse_args(argv)
    report(args.backend, *train(args.backend, epochs=args.epochs, width=args.width, dtype=args.dtype))


if __name__ == "__main__":
    main()
