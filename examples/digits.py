"""Train a 64-128-10 MLP on scikit-learn's bundled digits (no download) and report test accuracy.

python examples/digits.py                               # NumPy
python examples/digits.py --backend array_api_strict    # or torch, jax, cupy, auto
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import portable_nn as pnn
from portable_nn.tools.arguments import backend_arg, positive_int
from portable_nn.tools.problems import (
    load_digits_data as load_data,  # standardized, 75/25 split, random_state=0
)


def fit_and_score(
    model: pnn.Layer,
    backend: str | pnn.Backend,
    data: tuple[Any, Any, Any, Any],
    *,
    epochs: int,
    dtype: str = "float32",
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[float, float]:
    """Train ``model`` on ``data = (X_train, X_test, y_train, y_test)`` with Adam; return (test accuracy, wall seconds)."""
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
    return history["val_accuracy"][-1], seconds


def train(
    backend: str = "numpy",
    *,
    epochs: int = 30,
    dtype: str = "float32",
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[float, float]:
    """Train on ``backend``; return (test accuracy, wall seconds)."""
    model = pnn.Sequential(pnn.Linear(64, 128), pnn.ReLU(), pnn.Linear(128, 10))
    return fit_and_score(model, backend, load_data(), epochs=epochs, dtype=dtype, seed=seed, progress=progress)


def arguments(doc: str, epochs: int) -> argparse.ArgumentParser:
    """The command line both digits examples share: --backend, --epochs, --dtype.

    A backend that is unknown or not usable here is a usage error (exit status 2), as in
    ``python -m portable_nn``, before anything is trained.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--backend", type=backend_arg, default="numpy", help="numpy, torch, jax, cupy, auto...")
    parser.add_argument("--epochs", type=positive_int, default=epochs)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    return parser


def report(backend: str, accuracy: float, seconds: float) -> None:
    print(f"backend {pnn.get_backend(backend)}: test accuracy {accuracy:.4f}, wall time {seconds:.2f} s")


def main(argv: list[str] | None = None) -> None:
    args = arguments(__doc__, epochs=30).parse_args(argv)
    report(args.backend, *train(args.backend, epochs=args.epochs, dtype=args.dtype))


if __name__ == "__main__":
    main()
