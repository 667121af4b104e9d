"""Case g's CNN training step, besides portable_nn: PyTorch eager and a hand-written JAX step.

Conv2D(3, c1, 3, padding=1) -> ReLU -> MaxPool2D(2) -> Conv2D(c1, c2, 3, padding=1)
-> ReLU -> MaxPool2D(2) -> Flatten -> Linear(c2 * (S/4)^2, 10) on NCHW float32
images, softmax cross-entropy, SGD(lr=0.01) without momentum. Every candidate
starts from the same host-drawn params (portable_nn's Conv2D has
``torch.nn.Conv2d``'s weight layout ``(out, in, kh, kw)``; its Linear's ``W`` is
``(in, out)``, torch's ``weight`` its transpose) and trains on the same batches,
so their losses after a few steps agree. The portable_nn candidates are
:func:`._steps.pnn_step` on :func:`cnn_problem`.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass
from typing import Any

import numpy as np

from portable_nn import Backend, Conv2D, Flatten, Layer, Linear, MaxPool2D, ReLU, Sequential
from portable_nn.losses import softmax_cross_entropy
from portable_nn.optim import SGD
from portable_nn.tools.problems import Problem

from ._steps import Built, host_params, jax_sgd_step, torch_sgd_step

__all__ = ["CLASSES", "LR", "Im2col", "cnn_model", "cnn_problem", "flops", "im2col_memory", "images",
           "jax_step", "torch_step"]

CLASSES, LR, KERNEL, BATCHES = 10, 0.01, 3, 4


def cnn_model(size: int, c1: int, c2: int) -> Sequential:
    """The case's model for ``size`` x ``size`` RGB images (``size`` a multiple of 4)."""
    return Sequential(
        Conv2D(3, c1, KERNEL, padding=1), ReLU(), MaxPool2D(2),
        Conv2D(c1, c2, KERNEL, padding=1), ReLU(), MaxPool2D(2),
        Flatten(), Linear(c2 * (size // 4) ** 2, CLASSES),
    )


def images(rows: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``(rows, 3, size, size)`` float32 images; labels from a random linear teacher."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, 3, size, size)).astype(np.float32)
    teacher = rng.standard_normal((3 * size * size, CLASSES)).astype(np.float32)
    return X, np.argmax(X.reshape(rows, -1) @ teacher, axis=1).astype(np.int64)


def cnn_problem(batch: int, size: int, c1: int, c2: int, seed: int = 0) -> Problem:
    """The model, params drawn on the host (NumPy, float32), :data:`BATCHES` synthetic batches, SGD."""
    model = cnn_model(size, c1, c2)
    params = model.init(seed=seed, backend="numpy", dtype="float32")
    X, y = images(BATCHES * batch, size, seed)
    batches = tuple((X[i : i + batch], y[i : i + batch]) for i in range(0, X.shape[0], batch))
    desc = f"{model!r}, SGD(lr={LR}), softmax_cross_entropy, {BATCHES} synthetic batches of {batch}"
    return Problem("cnn-bench", desc, model, params, batches, softmax_cross_entropy, SGD(lr=LR), "float32")


def flops(batch: int, size: int, c1: int, c2: int) -> int:
    """Multiply-adds x 2 of the convs and the head: forward, dW, and dX except the first conv's."""
    area = KERNEL * KERNEL
    conv1 = 2 * batch * size * size * c1 * 3 * area
    conv2 = 2 * batch * (size // 2) ** 2 * c2 * c1 * area
    head = 2 * batch * c2 * (size // 4) ** 2 * CLASSES
    return 2 * conv1 + 3 * conv2 + 3 * head


# --- PyTorch eager ---------------------------------------------------------------------------------


def torch_step(prob: Problem, torch: Any, name: str = "torch eager", backend: Backend | None = None) -> Built:
    """``nn.Sequential`` of the same layers, trained by :func:`~benchmarks._steps.torch_sgd_step`."""
    W1, b1, W2, b2, W3, b3 = host_params(prob)
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(W1.shape[1], W1.shape[0], KERNEL, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(W2.shape[1], W2.shape[0], KERNEL, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(W3.shape[0], CLASSES),
    )
    weights = [(W1, b1), (W2, b2), (W3.T, b3)]  # torch's Linear weight is (out, in)
    return torch_sgd_step(prob, torch, model, weights, name, backend)


# --- JAX, written by hand ----------------------------------------------------------------------------


def jax_step(prob: Problem, jax: Any, name: str = "jax by hand (jit)") -> Built:
    """``lax.conv_general_dilated`` + ``lax.reduce_window`` max pooling, ``jax.value_and_grad``, SGD; jitted."""
    import jax.numpy as jnp

    lax = jax.lax

    def conv_relu_pool(x: Any, W: Any, b: Any) -> Any:
        y = lax.conv_general_dilated(x, W, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
        y = jax.nn.relu(y + b[None, :, None, None])
        return lax.reduce_window(y, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def logits(p: list[Any], X: Any) -> Any:
        W1, b1, W2, b2, W3, b3 = p
        h = conv_relu_pool(conv_relu_pool(X, W1, b1), W2, b2)
        return h.reshape(h.shape[0], -1) @ W3 + b3

    return jax_sgd_step(prob, jax, logits, name)


# --- memory of im2col ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Im2col:
    """One conv layer's im2col memory on NumPy, in bytes.

    Attributes:
        layer: the layer's repr; input_shape: its X's shape.
        cols: the im2col buffer the forward builds, ``(N, C, kh*kw, OH, OW)`` from the shapes.
        bound: kernel area x the input's size, ``kh * kw * X.nbytes``.
        traced_peak: tracemalloc's peak over one forward + backward (dX and grads), less what
            was allocated before: cols, the copies NumPy's ``tensordot`` makes, dcols, dX...
    """

    layer: str
    input_shape: tuple[int, ...]
    cols: int
    bound: int
    traced_peak: int

    @property
    def cols_ratio(self) -> float:
        return self.cols / self.bound

    @property
    def peak_ratio(self) -> float:
        return self.traced_peak / self.bound


def im2col_memory(model: Sequential, params: Any, X: np.ndarray) -> list[Im2col]:
    """:class:`Im2col` of each Conv2D of ``model`` (NumPy params), fed what the layers before it output."""
    out = []
    for layer, p in zip(model.layers, params, strict=True):
        if isinstance(layer, Conv2D):
            out.append(_conv_memory(layer, p, X))
        X, _ = layer.apply(p, X)
    return out


def _conv_memory(layer: Layer, p: Any, X: np.ndarray) -> Im2col:
    assert isinstance(layer, Conv2D)
    kh, kw = layer.kernel_size
    Y, _ = layer.apply(p, X)
    n, c = X.shape[:2]
    cols = n * c * kh * kw * Y.shape[2] * Y.shape[3] * X.itemsize
    dY = np.ones_like(Y)
    del Y
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        Y, backprop = layer.apply(p, X)
        dX, grads = backprop(dY)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return Im2col(repr(layer), tuple(X.shape), cols, kh * kw * X.nbytes, peak)
