"""CPU/GPU comparison: the same seeded training on several backends, timed and checked against NumPy.

For each backend the same :mod:`~portable_nn.tools.problems` problem is built from
the same host-drawn arrays and trained with the public API (``model.apply``,
the loss, ``backprop``, ``optimizer.step``). Two things are measured:

- speed: median seconds per step over several synchronized repeats after a
  warm-up (:func:`~portable_nn.tools.timing.time_steps`); every repeat restarts from
  the initial params, so each does the same work;
- agreement: a separate, untimed run records the loss of every step (one host
  transfer per step) and the final params; both are compared with NumPy's,
  the oracle.

Parity runs use full-precision float32 matmuls: TF32 is turned off on torch
CUDA and JAX runs under ``jax.default_matmul_precision("highest")`` (CuPy
uses no TF32 unless ``CUPY_TF32=1``). The settings are restored afterwards.

    from portable_nn.tools.compare import run_comparison
    result = run_comparison(["numpy", "torch"], problem="seed")
    print(result.table())
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import BackendError, host_rng, tree_map
from ..backends import Backend, available_backends, backend_name, get_backend, to_numpy
from ..layers.base import Params, check_int
from ..optim import DynamicLossScale
from ..training import compile_step
from ._compare_result import REFERENCE, BackendResult, Comparison, RecordedRun
from ._deviation import loss_deviations, max_loss_deviation, param_deviation
from .environment import environment
from .problems import DEFAULT_STEPS, PROBLEMS, Problem, default_dtype, make_problem
from .timing import Timing, time_steps

__all__ = [
    "REFERENCE",
    "BackendResult",
    "Comparison",
    "RecordedRun",
    "loss_deviations",
    "max_loss_deviation",
    "param_deviation",
    "parity_precision",
    "record_run",
    "run_comparison",
    "time_training",
    "train_step",
]

Step = Callable[[Params, Any, int], tuple[Params, Any, Any]]


# --- one training step, recorded and timed runs -------------------------------------------------


TIMED = {
    False: "what fit runs by default: compile_step(compile=None), jax.jit on JAX, the portable code elsewhere",
    True: "the portable code, eagerly, on every backend (--eager)",
}


def optimizer_for(problem: Problem, precision: str | None) -> Any:
    """The problem's optimizer, wrapped in :class:`~portable_nn.optim.DynamicLossScale` for float16 (as ``fit`` does)."""
    if precision == "float16":
        return DynamicLossScale(problem.optimizer)
    return problem.optimizer


def train_step(problem: Problem, *, eager: bool = False, precision: str | None = None) -> Step:
    """The problem's step: ``step(params, opt_state, i) -> (params, opt_state, loss)``.

    Forward on batch ``i % len(batches)``, loss, backprop, optimizer step. The
    loss (a 0-d array on the device) is that of the params *before* the update.
    By default the step runs as ``fit`` runs it (``compile_step``'s default:
    ``jax.jit`` on JAX); ``eager=True`` runs the portable code op by op everywhere.
    ``precision`` (``"bfloat16"``, ``"float16"``) computes in that dtype over
    the problem's float32 params, as ``fit(precision=...)`` does; for float16
    the problem's optimizer is wrapped in
    :class:`~portable_nn.optim.DynamicLossScale` (as ``fit`` wraps it), so
    ``opt_state`` is then a :class:`~portable_nn.optim.LossScaleState`.
    """
    trainer = compile_step(problem.model, problem.loss, optimizer_for(problem, precision),
                           compile=False if eager else None, precision=precision)
    batches = problem.batches
    rng = host_rng(0)  # fixed, so train=True never seeds from the OS (no dropout in these models)

    def step(params: Params, state: Any, i: int) -> tuple[Params, Any, Any]:
        X, T = batches[i % len(batches)]
        return trainer(params, state, X, T, rng)

    return step


def record_run(
    problem: Problem, steps: int, *, on_step: Callable[[], None] | None = None, eager: bool = False,
    precision: str | None = None,
) -> RecordedRun:
    """Train ``steps`` steps from the problem's initial params, reading each loss back to the host.

    Args:
        problem: built by :func:`~portable_nn.tools.problems.make_problem` (or a copy
            with its arrays replaced, e.g. read-only ones).
        steps: number of steps (>= 1).
        on_step: called after each step (e.g. a progress bar).
        eager: run the portable code op by op (see :func:`train_step`).
        precision: compute in ``"bfloat16"`` or ``"float16"`` (see :func:`train_step`).

    Returns:
        A :class:`RecordedRun`: float64 losses ``(steps,)`` and host final params.
    """
    steps = check_int("record_run", "steps", steps, 1)
    step = train_step(problem, eager=eager, precision=precision)
    params, state = problem.params, optimizer_for(problem, precision).init(problem.params)
    losses = np.empty(steps, dtype=np.float64)
    for i in range(steps):
        params, state, loss = step(params, state, i)
        losses[i] = float(loss)
        if on_step is not None:
            on_step()
    return RecordedRun(losses, tree_map(to_numpy, params))


def time_training(
    problem: Problem,
    backend: Backend,
    steps: int,
    *,
    repeats: int = 5,
    warmup: int = 10,
    on_repeat: Callable[[int], None] | None = None,
    eager: bool = False,
    precision: str | None = None,
) -> Timing:
    """Time ``steps`` training steps of ``problem`` on ``backend`` (see :func:`~portable_nn.tools.timing.time_steps`).

    Every repeat restarts from the initial params and a fresh optimizer state
    (outside the clock), so each repeat does exactly the recorded run's work.
    Nothing is read back to the host inside the clock.
    """
    steps = check_int("time_training", "steps", steps, 1)
    step = train_step(problem, eager=eager, precision=precision)
    opt = optimizer_for(problem, precision)
    current: dict[str, Any] = {}

    def reset() -> None:
        current.update(params=problem.params, state=opt.init(problem.params), i=0)

    def one() -> Any:
        current["params"], current["state"], loss = step(current["params"], current["state"], current["i"])
        current["i"] += 1
        return current["params"], loss

    return time_steps(
        one, backend, steps=steps, repeats=repeats, warmup=warmup, reset=reset, on_repeat=on_repeat
    )


# --- the whole comparison ----------------------------------------------------------------------


def parity_precision(backend: Backend) -> Any:
    """Full float32 matmul precision while inside (``backend.parity_precision()``: no TF32 on
    torch CUDA, ``highest`` on JAX); the previous settings are restored on exit."""
    return backend.parity_precision()


def _label(spec: str | Backend, be: Backend) -> str:
    if isinstance(spec, str):
        return spec
    device = be.device_label
    return be.name if device in ("cpu", "cpu:0", "CPU_DEVICE") else f"{be.name}:{device}"


def _resolve(
    specs: Sequence[str | Backend], problem: str, dtype: str | None, precision: str | None = None
) -> tuple[list[tuple[str, Backend]], dict[str, str]]:
    """Backends to run (reference first, duplicates dropped) and the specs that cannot run, with why.

    With a ``precision``, the NumPy reference runs in it where NumPy has it (float16) and in the params'
    dtype otherwise (bfloat16): the deviations then show the precision's distance from float32."""
    chosen: list[tuple[str, Backend]] = []
    missing: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    for spec in [REFERENCE, *specs]:
        try:
            be = get_backend(spec)
            be.dtype(dtype or default_dtype(problem))
            if precision is not None and spec != REFERENCE:
                be.dtype(precision)
        except (BackendError, TypeError) as e:
            missing[str(spec)] = str(e)
            continue
        key = (be.name, be.device_label)
        if key not in seen:
            seen.add(key)
            chosen.append((_label(spec, be), be))
    return chosen, missing


def run_comparison(
    backends: Sequence[str | Backend] | None = None,
    problem: str = "seed",
    *,
    dtype: str | None = None,
    steps: int | None = None,
    hidden: int = 512,
    batch: int = 256,
    repeats: int = 5,
    warmup: int = 10,
    progress: bool | None = None,
    eager: bool = False,
    precision: str | None = None,
) -> Comparison:
    """Train ``problem`` on each backend; time it and compare its losses and params with NumPy's.

    Args:
        backends: specs such as ``"torch"``, ``"torch:cuda"``, ``"jax:gpu"``,
            ``"cupy"``, or Backend objects. ``None`` means all of
            :func:`~portable_nn.available_backends`. NumPy, the reference, is
            always run first.
        problem: ``"seed"``, ``"digits"``, ``"mlp"`` or ``"cnn"`` (see :mod:`portable_nn.tools.problems`).
        dtype: ``"float32"``/``"float64"``; ``None`` is the problem's default.
        steps: steps per run; ``None`` is the problem's default
            (:data:`~portable_nn.tools.problems.DEFAULT_STEPS`: seed 500, digits 100, mlp 50).
        hidden, batch: width and batch size of the ``mlp`` problem.
        repeats: timed repeats per backend (>= 1).
        warmup: untimed warm-up steps before timing (>= 0).
        progress: tqdm bar on stderr; ``None`` shows it only when stderr is a terminal.
        eager: time and record the portable code op by op on every backend,
            instead of the way ``fit`` runs it (``jax.jit`` on JAX).
        precision: ``"bfloat16"`` or ``"float16"``: train in mixed precision
            (float32 params, forward and backward in this dtype, as
            ``fit(precision=...)``); backends without it are listed in
            ``missing``. The NumPy reference runs in it where NumPy has it
            (float16), in float32 otherwise.

    Returns:
        A :class:`Comparison`. Backends that are not installed, lack the
        device, or lack the dtype are listed in ``missing`` (with how to fix
        it); a backend that raises while running is listed in ``failed``.
        Neither stops the others.

    Raises:
        BackendError: a spec names an unknown library (a typo such as
            ``"nmupy"``), before any work; the message lists the known names.
    """
    if problem not in PROBLEMS:
        raise ValueError(f"run_comparison: unknown problem {problem!r}; choose one of {', '.join(PROBLEMS)}.")
    if isinstance(backends, str):
        raise TypeError(
            "run_comparison: backends must be a list of specs, e.g. ['numpy', 'torch'], not one string."
        )
    n_steps = DEFAULT_STEPS[problem] if steps is None else check_int("run_comparison", "steps", steps, 1)
    check_int("run_comparison", "repeats", repeats, 1)
    check_int("run_comparison", "warmup", warmup, 0)
    specs: Sequence[str | Backend] = available_backends() if backends is None else backends
    for spec in specs:  # a typo fails now; a known backend that cannot run is listed in missing
        if isinstance(spec, str):
            backend_name(spec)
    if precision not in (None, "bfloat16", "float16"):
        raise ValueError(f"run_comparison: precision must be None, 'bfloat16' or 'float16', got {precision!r}.")
    if precision is not None and dtype == "float64":
        raise ValueError("run_comparison: precision needs float32 params (the master weights): pass dtype=None or 'float32'.")
    dtype = "float32" if precision is not None else dtype
    chosen, missing = _resolve(specs, problem, dtype, precision)
    failed: dict[str, str] = {}
    results: list[BackendResult] = []
    problems: dict[str, tuple[Backend, Problem]] = {}
    for label, be in chosen:
        try:
            problems[label] = be, make_problem(problem, be, dtype=dtype, hidden=hidden, batch=batch)
        except Exception as e:  # e.g. scikit-learn missing for digits: report, keep going
            failed[label] = f"{type(e).__name__}: {e}"
    first = next((p for _, p in problems.values()), None)
    bar = _progress_bar(progress, len(problems) * (repeats + 1) * n_steps)
    try:
        for label, (be, prob) in problems.items():
            if bar is not None:
                bar.set_description(label)
            has = precision is not None and be.adapter.precision_problem(be.xp, be.device, precision) is None
            prec = precision if has else None  # the reference runs in float32 where NumPy lacks the precision
            try:
                with parity_precision(be):
                    timing = time_training(
                        prob,
                        be,
                        n_steps,
                        repeats=repeats,
                        warmup=warmup,
                        on_repeat=None if bar is None else bar.update,
                        eager=eager,
                        precision=prec,
                    )
                    run = record_run(
                        prob, n_steps, on_step=None if bar is None else (lambda: bar.update(1)), eager=eager,
                        precision=prec,
                    )
            except Exception as e:  # one backend failing must not hide the others' results
                failed[label] = f"{type(e).__name__}: {e}"
                continue
            shown = prob.dtype if prec is None else f"{prec} (mixed)"
            results.append(BackendResult(label, be, be.describe_device(), shown, timing, run))
    finally:
        if bar is not None:
            bar.close()
    results = _against_reference(results)
    settings = {
        "problem": problem,
        "dtype": first.dtype if first is not None else (dtype or default_dtype(problem)),
        "steps": n_steps,
        "repeats": repeats,
        "warmup": warmup,
        "timed": TIMED[bool(eager)],
        "precision": precision,
        "hidden": hidden if problem == "mlp" else None,
        "batch": batch if problem == "mlp" else None,
        "backends": [s if isinstance(s, str) else _label(s, s) for s in specs],
    }
    return Comparison(
        problem=problem,
        description=first.description if first is not None else problem,
        dtype=str(settings["dtype"]),
        steps=n_steps,
        settings=settings,
        results=results,
        missing=missing,
        failed=failed,
        env=environment(be for _, be in chosen),
    )


def _against_reference(results: list[BackendResult]) -> list[BackendResult]:
    ref = next((r for r in results if r.label == REFERENCE), None)
    if ref is None:
        return results
    return [
        dataclasses.replace(
            r,
            loss_deviation=max_loss_deviation(r.run.losses, ref.run.losses),
            param_deviation=param_deviation(r.run.params, ref.run.params),
            speedup=ref.timing.median / r.timing.median if r.timing.median > 0 else math.inf,
        )
        for r in results
    ]


def _progress_bar(progress: bool | None, total: int) -> Any:
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="compare", leave=False, mininterval=0.25)
