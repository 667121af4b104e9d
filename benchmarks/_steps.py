"""Timed training steps, the scaffolding cases a, d and g share: one call = one step, restartable.

Every candidate starts from the same host-drawn params of a
:class:`~portable_nn.tools.problems.Problem` and cycles through its batches. A
builder returns a :class:`Built`: the timed :class:`~benchmarks._interleaved.Candidate`
and ``loss_after(k)``, which restarts from the initial params and returns the
loss of step ``k``, to check that all candidates compute the same thing.
Here: portable_nn's ``compile_step`` (on NumPy or any backend) and ``fit``'s
step, and the PyTorch eager and ``jax.jit`` trainers around a model and loss
the case supplies. :func:`time_checked` times a case's candidates and reads
their losses; :func:`step_table` shows them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from portable_nn import Backend, compile_step, get_backend, to_backend, to_numpy
from portable_nn.optim import DynamicLossScale
from portable_nn.tools.problems import Problem
from portable_nn.tools.timing import Timing

from ._common import Config, checked_values, ratio, relative_dev, run_candidates, timing_columns, timing_row
from ._interleaved import Candidate
from ._result import CaseResult, Column

__all__ = [
    "Built",
    "functional_step",
    "host_batches",
    "host_params",
    "jax_sgd_step",
    "pnn_fit_step",
    "pnn_step",
    "restartable",
    "step_table",
    "time_checked",
    "torch_sgd_step",
]


@dataclass(frozen=True)
class Built:
    """A timed candidate and ``loss_after(k)`` (None where there is no loss, e.g. GEMM only)."""

    candidate: Candidate
    loss_after: Callable[[int], float] | None


def host_params(prob: Problem) -> list[np.ndarray]:
    """``[W1, b1, W2, b2, ...]`` of the layers that have params, as host arrays (copies)."""
    out = []
    for layer in prob.params:
        if layer:
            out += [np.array(to_numpy(layer["W"])), np.array(to_numpy(layer["b"]))]
    return out


def host_batches(prob: Problem) -> list[tuple[np.ndarray, np.ndarray]]:
    """The problem's ``(X, labels)`` batches as host arrays."""
    return [(np.asarray(to_numpy(X)), np.asarray(to_numpy(T))) for X, T in prob.batches]


def restartable(
    name: str, one: Callable[[], Any], be: Backend | None, reset: Callable[[], None], cur: dict[str, Any]
) -> Built:
    """A :class:`Built` whose ``loss_after(k)`` runs ``reset()`` and ``k`` calls of ``one``, then reads
    ``cur["loss"]``; ``reset`` has run once already, so the candidate is ready to time."""

    def loss_after(k: int) -> float:
        reset()
        for _ in range(k):
            one()
        return float(cur["loss"])

    reset()
    return Built(Candidate(name, one, be, reset), loss_after)


def functional_step(name: str, train: Callable[..., Any], init: Any, batches: list[Any], be: Any) -> Built:
    """A candidate cycling ``params, loss = train(params, X, y)`` over ``batches`` from ``init``."""
    cur: dict[str, Any] = {}

    def reset() -> None:
        cur.update(params=init, i=0)

    def one() -> Any:
        X, y = batches[cur["i"] % len(batches)]
        cur["params"], cur["loss"] = train(cur["params"], X, y)
        cur["i"] += 1
        return cur["params"], cur["loss"]  # the params too, so a timer can wait on them (JAX)

    return restartable(name, one, be, reset, cur)


# --- portable_nn through its public fast path ----------------------------------------------------


def pnn_step(
    prob: Problem, name: str = "portable_nn", backend: Backend | None = None, precision: str | None = None
) -> Built:
    """``pnn.compile_step`` on NumPy (nothing to jit there), or with params and batches on ``backend``;
    with ``precision`` (``"bfloat16"``, ``"float16"``) in mixed precision, as ``fit(precision=...)`` runs it
    (float16 with ``DynamicLossScale``)."""
    optimizer = DynamicLossScale(prob.optimizer) if precision == "float16" else prob.optimizer
    step = compile_step(prob.model, prob.loss, optimizer, precision=precision)
    be = backend or get_backend("numpy")
    params, batches = to_backend((prob.params, prob.batches), be)  # copies, on NumPy too
    cur: dict[str, Any] = {}

    def reset() -> None:
        cur.update(params=params, state=optimizer.init(params), i=0)

    def one() -> Any:
        X, T = batches[cur["i"] % len(batches)]
        cur["params"], cur["state"], cur["loss"] = step(cur["params"], cur["state"], X, T)
        cur["i"] += 1
        return cur["params"], cur["loss"]  # the params too, so a timer can wait on them (JAX)

    return restartable(name, one, be, reset, cur)


def pnn_fit_step(prob: Problem, name: str = "portable_nn (fit's step)") -> Built:
    """What ``pnn.fit`` runs per step on NumPy: ``TrainStep.fit_step`` (forward, backprop, the
    optimizer's step) and the NaN/inf check of the loss and the new params, read on the host."""
    trainer = compile_step(prob.model, prob.loss, prob.optimizer, compile=None)
    batches = prob.batches
    cur: dict[str, Any] = {}

    def reset() -> None:
        cur.update(params=prob.params, state=prob.optimizer.init(prob.params), i=0)

    def one() -> Any:
        X, T = batches[cur["i"] % len(batches)]
        cur["loss"], _, params, state, check = trainer.fit_step(cur["params"], cur["state"], X, T)
        if not math.isfinite(float(check)):
            raise FloatingPointError(f"{name}: NaN/inf at step {cur['i']}")
        cur["params"], cur["state"] = params, state
        cur["i"] += 1
        return cur["loss"]

    return restartable(name, one, get_backend("numpy"), reset, cur)


# --- PyTorch eager ---------------------------------------------------------------------------------


def torch_sgd_step(
    prob: Problem,
    torch: Any,
    model: Any,
    weights: Sequence[tuple[np.ndarray, np.ndarray]],
    name: str,
    backend: Backend | None = None,
) -> Built:
    """``model`` (an ``nn.Sequential`` built on the CPU) + ``F.cross_entropy`` + autograd +
    ``torch.optim.SGD`` at the problem's learning rate, on the CPU or ``backend``'s device.

    ``weights``: ``(weight, bias)`` in torch's layout for each of the model's Conv2d and Linear
    layers, in order (torch's Linear weight is ``(out, in)``: the transpose of portable_nn's ``W``).
    """
    device = "cpu" if backend is None else backend.device
    model = model.to(device)
    layers = [m for m in model if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    opt = torch.optim.SGD(model.parameters(), lr=prob.optimizer.lr)
    batches = [tuple(torch.from_numpy(a.copy()).to(device) for a in b) for b in host_batches(prob)]
    cross_entropy = torch.nn.functional.cross_entropy
    cur: dict[str, Any] = {}

    def reset() -> None:
        with torch.no_grad():
            for layer, (W, b) in zip(layers, weights, strict=True):
                layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(W)))
                layer.bias.copy_(torch.from_numpy(b))
        cur["i"] = 0

    def one() -> Any:
        X, y = batches[cur["i"] % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss = cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        cur["i"] += 1
        cur["loss"] = loss.detach()
        return cur["loss"]

    return restartable(name, one, backend, reset, cur)


# --- JAX jit --------------------------------------------------------------------------------------


def jax_sgd_step(prob: Problem, jax: Any, logits: Callable[[list[Any], Any], Any], name: str) -> Built:
    """``jax.value_and_grad`` of softmax cross-entropy on ``logits(params, X)`` and the SGD update at
    the problem's learning rate, in one ``jax.jit`` function on the CPU; params from :func:`host_params`."""
    import jax.numpy as jnp

    lr = prob.optimizer.lr
    cpu = jax.devices("cpu")[0]
    init = [jax.device_put(w, cpu) for w in host_params(prob)]
    batches = [(jax.device_put(X, cpu), jax.device_put(y, cpu)) for X, y in host_batches(prob)]

    def loss_fn(p: list[Any], X: Any, y: Any) -> Any:
        logp = jax.nn.log_softmax(logits(p, X), axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def train(p: list[Any], X: Any, y: Any) -> tuple[list[Any], Any]:
        loss, g = jax.value_and_grad(loss_fn)(p, X, y)
        return [w - lr * gw for w, gw in zip(p, g, strict=True)], loss

    return functional_step(name, train, init, batches, None)


# --- timing them, and their table --------------------------------------------------------------


def time_checked(
    builders: Sequence[tuple[str, Callable[[], Built]]],
    config: Config,
    result: CaseResult,
    *,
    desc: str,
    check_steps: int,
) -> tuple[dict[str, Timing], dict[str, float]]:
    """Build and time the candidates interleaved, then read each timed one's ``loss_after(check_steps)``.

    Returns:
        ``({name: Timing}, {name: loss})``; a candidate that failed to build, or whose check
        raised, is recorded in ``result.failed`` and left out.
    """
    built: dict[str, Built] = {}

    def keep(name: str, make: Callable[[], Built]) -> Callable[[], Candidate]:
        def build() -> Candidate:
            built[name] = make()
            return built[name].candidate

        return build

    timings = run_candidates([(n, keep(n, m)) for n, m in builders], config, result, desc=desc)
    checks = {n: partial(b.loss_after, check_steps) for n, b in built.items() if b.loss_after is not None}
    return timings, checked_values(checks, timings, result, "loss check")


def step_table(
    result: CaseResult,
    timings: dict[str, Timing],
    losses: dict[str, float],
    *,
    ref: str,
    versus: dict[str, tuple[str, str]],
    flops: int,
    check_steps: int,
) -> None:
    """Rows and columns of a step case: time, spread, ratios, GFLOP/s, page faults, loss check.

    Args:
        ref: the candidate whose loss the others' ``loss_dev`` is relative to.
        versus: row key -> (column header, candidate): ``key`` is each row's median time over that
            candidate's (None where it did not run).
        flops: floating-point operations of one step.
    """
    medians = {key: timings[who].median if who in timings else None for key, (_, who) in versus.items()}
    for name, timing in timings.items():
        result.rows.append(
            timing_row(
                name,
                timing,
                **{key: ratio(timing.median, t) for key, t in medians.items()},
                gflops=flops / timing.median / 1e9 if timing.median > 0 else None,
                loss_check=losses.get(name),
                loss_dev=relative_dev(losses.get(name), losses.get(ref)),
            )
        )
    result.columns = [
        *timing_columns("step"),
        *(Column(header, key, "ratio") for key, (header, _) in versus.items()),
        Column("GFLOP/s", "gflops", "gflops"),
        Column("faults/step", "faults_per_step", "int"),
        Column(f"loss@{check_steps}", "loss_check", "float"),
    ]
