"""The 784-H-H-10 training step of cases a and d, besides portable_nn's (see :mod:`._steps`).

Every implementation starts from the same host-drawn params and trains on the
same batches (those of :func:`portable_nn.tools.problems.make_problem` ``"mlp"``):
ReLU MLP with biases, softmax cross-entropy on integer labels, SGD without
momentum. Here: the step written by hand in NumPy, its eight matmuls alone,
PyTorch eager and ``jax.jit``; each builder returns a :class:`~._steps.Built`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from portable_nn import Backend, get_backend
from portable_nn.tools.problems import Problem, make_problem

from ._interleaved import Candidate
from ._steps import Built, functional_step, host_batches, host_params, jax_sgd_step, torch_sgd_step

__all__ = [
    "CLASSES",
    "INPUTS",
    "LR",
    "flops",
    "gemm_shapes",
    "gemm_step",
    "jax_step",
    "mlp_problem",
    "numpy_step",
    "torch_step",
]

INPUTS, CLASSES, LR = 784, 10, 0.01


def mlp_problem(hidden: int, batch: int) -> Problem:
    """Case a's problem on NumPy: 784-H-H-10, float32, SGD(lr=0.01), 4 synthetic batches."""
    prob = make_problem("mlp", "numpy", dtype="float32", hidden=hidden, batch=batch)
    assert prob.optimizer.lr == LR
    return prob


def gemm_shapes(hidden: int, batch: int) -> list[tuple[int, int, int]]:
    """``(m, k, n)`` of the step's eight matmuls: 3 forward, 3 weight grads, 2 input grads."""
    H, B = hidden, batch
    return [
        (B, INPUTS, H),  # X @ W1
        (B, H, H),  # H1 @ W2
        (B, H, CLASSES),  # H2 @ W3
        (INPUTS, B, H),  # X.T @ dZ1
        (H, B, H),  # H1.T @ dZ2
        (H, B, CLASSES),  # H2.T @ dZ3
        (B, CLASSES, H),  # dZ3 @ W3.T
        (B, H, H),  # dZ2 @ W2.T
    ]


def flops(hidden: int, batch: int) -> int:
    """Floating-point operations of the eight matmuls, ``2 m n k`` each."""
    return sum(2 * m * k * n for m, k, n in gemm_shapes(hidden, batch))


# --- plain NumPy, written by hand ----------------------------------------------------------------


def numpy_step(prob: Problem, name: str = "numpy by hand") -> Built:
    """Forward, softmax-CE, backward and SGD in plain NumPy; params updated functionally (``w = w - lr*g``)."""
    init = host_params(prob)
    batches = host_batches(prob)
    lr = LR

    def train(p: list[np.ndarray], X: np.ndarray, y: np.ndarray) -> tuple[list[np.ndarray], Any]:
        W1, b1, W2, b2, W3, b3 = p
        N = X.shape[0]
        Z1 = X @ W1 + b1
        H1 = np.maximum(Z1, 0)
        Z2 = H1 @ W2 + b2
        H2 = np.maximum(Z2, 0)
        Z3 = H2 @ W3 + b3
        S = Z3 - Z3.max(axis=1, keepdims=True)
        E = np.exp(S)
        sums = E.sum(axis=1, keepdims=True)
        rows = np.arange(N)
        loss = np.log(sums[:, 0]).mean() - S[rows, y].mean()
        dZ3 = E / sums
        dZ3[rows, y] -= 1
        dZ3 /= N
        dW3, db3 = H2.T @ dZ3, dZ3.sum(axis=0)
        dZ2 = np.where(Z2 < 0, 0, dZ3 @ W3.T)
        dW2, db2 = H1.T @ dZ2, dZ2.sum(axis=0)
        dZ1 = np.where(Z1 < 0, 0, dZ2 @ W2.T)
        dW1, db1 = X.T @ dZ1, dZ1.sum(axis=0)
        grads = (dW1, db1, dW2, db2, dW3, db3)
        return [w - lr * g for w, g in zip(p, grads, strict=True)], loss

    return functional_step(name, train, init, batches, get_backend("numpy"))


def gemm_step(hidden: int, batch: int, name: str = "GEMM only") -> Built:
    """The step's eight matmuls alone, into preallocated outputs, with the transposes the step uses."""
    rng = np.random.default_rng(0)
    f32 = np.float32

    def a(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(f32)

    H, B = hidden, batch
    X, W1, W2, W3 = a(B, INPUTS), a(INPUTS, H), a(H, H), a(H, CLASSES)
    H1, H2, Z3 = a(B, H), a(B, H), a(B, CLASSES)
    dZ1, dZ2, dZ3 = a(B, H), a(B, H), a(B, CLASSES)
    dW1, dW2, dW3 = a(INPUTS, H), a(H, H), a(H, CLASSES)
    dH2, dH1 = a(B, H), a(B, H)
    mm = np.matmul

    def one() -> None:
        mm(X, W1, out=H1)
        mm(H1, W2, out=H2)
        mm(H2, W3, out=Z3)
        mm(X.T, dZ1, out=dW1)
        mm(H1.T, dZ2, out=dW2)
        mm(H2.T, dZ3, out=dW3)
        mm(dZ3, W3.T, out=dH2)
        mm(dZ2, W2.T, out=dH1)

    return Built(Candidate(name, one, get_backend("numpy")), None)


# --- PyTorch eager ---------------------------------------------------------------------------------


def torch_step(prob: Problem, torch: Any, name: str = "torch eager", backend: Backend | None = None) -> Built:
    """``nn.Sequential`` of the same MLP, trained by :func:`~benchmarks._steps.torch_sgd_step`."""
    nn = torch.nn
    W1, b1, W2, b2, W3, b3 = host_params(prob)
    hidden = W1.shape[1]
    model = nn.Sequential(
        nn.Linear(INPUTS, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, CLASSES)
    )
    weights = [(W1.T, b1), (W2.T, b2), (W3.T, b3)]  # torch's Linear weight is (out, in)
    return torch_sgd_step(prob, torch, model, weights, name, backend)


# --- JAX jit --------------------------------------------------------------------------------------


def jax_step(prob: Problem, jax: Any, name: str = "jax jit") -> Built:
    """``jax.value_and_grad`` of the same loss and the SGD update, in one ``jax.jit`` function."""

    def logits(p: list[Any], X: Any) -> Any:
        W1, b1, W2, b2, W3, b3 = p
        h = jax.nn.relu(X @ W1 + b1)
        h = jax.nn.relu(h @ W2 + b2)
        return h @ W3 + b3

    return jax_sgd_step(prob, jax, logits, name)
