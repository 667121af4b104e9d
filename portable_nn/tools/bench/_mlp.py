"""The 784-H-H-10 training step of cases a and d, five ways.

Every implementation starts from the same host-drawn params and trains on the
same batches (those of :func:`portable_nn.tools.problems.make_problem` ``"mlp"``):
ReLU MLP with biases, softmax cross-entropy on integer labels, SGD without
momentum. Each builder returns a :class:`Built`: the timed
:class:`~portable_nn.tools.timing.Candidate` (one call = one training step, cycling
through the batches) and ``loss_after(k)``, which restarts from the initial
params and returns the loss of step ``k``, to check that all of them compute
the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...backends import Backend, get_backend, to_backend, to_numpy
from ...training import compile_step
from ..problems import Problem, make_problem
from ..timing import Candidate

__all__ = [
    "Built",
    "INPUTS",
    "CLASSES",
    "LR",
    "flops",
    "gemm_shapes",
    "host_params",
    "jax_step",
    "mlp_problem",
    "numpy_step",
    "pnn_step",
    "pnn_fit_step",
    "gemm_step",
    "torch_step",
]

INPUTS, CLASSES, LR = 784, 10, 0.01


@dataclass(frozen=True)
class Built:
    """A timed candidate and ``loss_after(k)`` (None where there is no loss, e.g. GEMM only)."""

    candidate: Candidate
    loss_after: Callable[[int], float] | None


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


def host_params(prob: Problem) -> list[np.ndarray]:
    """``[W1, b1, W2, b2, W3, b3]`` as host arrays (copies)."""
    out = []
    for layer in prob.params:
        if layer:
            out += [np.array(to_numpy(layer["W"])), np.array(to_numpy(layer["b"]))]
    return out


def _host_batches(prob: Problem) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.asarray(to_numpy(X)), np.asarray(to_numpy(T))) for X, T in prob.batches]


def _loss_after(
    reset: Callable[[], None], step: Callable[[], Any], cur: dict[str, Any]
) -> Callable[[int], float]:
    def loss_after(k: int) -> float:
        reset()
        for _ in range(k):
            step()
        return float(cur["loss"])

    return loss_after


def _functional(
    name: str, train: Callable[..., Any], init: Any, batches: list[Any], be: Any
) -> Built:
    """A candidate cycling ``params, loss = train(params, X, y)`` over ``batches`` from ``init``."""
    cur: dict[str, Any] = {}

    def reset() -> None:
        cur.update(params=init, i=0)

    def one() -> Any:
        X, y = batches[cur["i"] % len(batches)]
        cur["params"], cur["loss"] = train(cur["params"], X, y)
        cur["i"] += 1
        return cur["params"], cur["loss"]  # the params too, so a timer can wait on them (JAX)

    reset()
    return Built(Candidate(name, one, be, reset), _loss_after(reset, one, cur))


# --- portable_nn through its public fast path ----------------------------------------------------


def pnn_step(prob: Problem, name: str = "portable_nn", backend: Backend | None = None) -> Built:
    """``pnn.compile_step`` on NumPy (nothing to jit there), or with params and batches on ``backend``."""
    step = compile_step(prob.model, prob.loss, prob.optimizer)
    be = backend or get_backend("numpy")
    params, batches = to_backend((prob.params, prob.batches), be)  # copies, on NumPy too
    n = len(batches)
    cur: dict[str, Any] = {}

    def reset() -> None:
        cur.update(params=params, state=prob.optimizer.init(params), i=0)

    def one() -> Any:
        X, T = batches[cur["i"] % n]
        cur["params"], cur["state"], cur["loss"] = step(cur["params"], cur["state"], X, T)
        cur["i"] += 1
        return cur["params"], cur["loss"]  # the params too, so a timer can wait on them (JAX)

    reset()
    return Built(Candidate(name, one, be, reset), _loss_after(reset, one, cur))


def pnn_fit_step(prob: Problem, name: str = "portable_nn (fit's step)") -> Built:
    """What ``pnn.fit`` runs per step on NumPy: ``TrainStep.fit_step`` (forward, backprop, the
    optimizer's step) and the NaN/inf check of the loss and the new params, read on the host."""
    trainer = compile_step(prob.model, prob.loss, prob.optimizer, compile=None)
    batches, n = prob.batches, len(prob.batches)
    cur: dict[str, Any] = {}

    def reset() -> None:
        cur.update(params=prob.params, state=prob.optimizer.init(prob.params), i=0)

    def one() -> Any:
        X, T = batches[cur["i"] % n]
        cur["loss"], _, params, state, check = trainer.fit_step(cur["params"], cur["state"], X, T)
        if not math.isfinite(float(check)):
            raise FloatingPointError(f"{name}: NaN/inf at step {cur['i']}")
        cur["params"], cur["state"] = params, state
        cur["i"] += 1
        return cur["loss"]

    reset()
    return Built(Candidate(name, one, get_backend("numpy"), reset), _loss_after(reset, one, cur))


# --- plain NumPy, written by hand ----------------------------------------------------------------


def numpy_step(prob: Problem, name: str = "numpy by hand") -> Built:
    """Forward, softmax-CE, backward and SGD in plain NumPy; params updated functionally (``w = w - lr*g``)."""
    init = host_params(prob)
    batches = _host_batches(prob)
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

    return _functional(name, train, init, batches, get_backend("numpy"))


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
    """``nn.Sequential`` + ``F.cross_entropy`` + autograd + ``torch.optim.SGD``, on the CPU or ``backend``."""
    device = "cpu" if backend is None else backend.device
    init = host_params(prob)
    hidden = init[0].shape[1]
    model = torch.nn.Sequential(
        torch.nn.Linear(INPUTS, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, CLASSES),
    ).to(device)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    batches = [tuple(torch.from_numpy(a.copy()).to(device) for a in b) for b in _host_batches(prob)]
    n = len(batches)
    cross_entropy = torch.nn.functional.cross_entropy
    cur: dict[str, Any] = {}

    def reset() -> None:
        with torch.no_grad():
            for lin, W, b in zip(linears, init[0::2], init[1::2], strict=True):
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
                lin.bias.copy_(torch.from_numpy(b))
        cur["i"] = 0

    def one() -> Any:
        X, y = batches[cur["i"] % n]
        opt.zero_grad(set_to_none=True)
        loss = cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        cur["i"] += 1
        cur["loss"] = loss.detach()
        return cur["loss"]

    reset()
    return Built(Candidate(name, one, backend, reset), _loss_after(reset, one, cur))


# --- JAX jit --------------------------------------------------------------------------------------


def jax_step(prob: Problem, jax: Any, name: str = "jax jit") -> Built:
    """``jax.value_and_grad`` of the same loss and the SGD update, in one ``jax.jit`` function."""
    import jax.numpy as jnp

    cpu = jax.devices("cpu")[0]
    init = [jax.device_put(w, cpu) for w in host_params(prob)]
    batches = [(jax.device_put(X, cpu), jax.device_put(y, cpu)) for X, y in _host_batches(prob)]

    def loss_fn(p: list[Any], X: Any, y: Any) -> Any:
        W1, b1, W2, b2, W3, b3 = p
        h = jax.nn.relu(X @ W1 + b1)
        h = jax.nn.relu(h @ W2 + b2)
        logp = jax.nn.log_softmax(h @ W3 + b3, axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def train(p: list[Any], X: Any, y: Any) -> tuple[list[Any], Any]:
        loss, g = jax.value_and_grad(loss_fn)(p, X, y)
        return [w - LR * gw for w, gw in zip(p, g, strict=True)], loss

    return _functional(name, train, init, batches, None)
