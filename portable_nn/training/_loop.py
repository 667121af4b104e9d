"""fit's inner loop: one epoch step by step.

Each step computes the new params functionally and checks the loss and the
new params for NaN/inf in one host read before keeping them, so the params in
hand are always the last finite ones; Ctrl-C is honoured between steps, never
inside one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from .._errors import FitInterrupted, NonFiniteError, StopTraining
from ..backends import namespace
from ..layers.base import Array, Params
from ._data import batches
from ._interrupt import Interrupts
from ._step import TrainStep, n_correct

__all__ = ["History", "Loop", "StepRunner", "batches", "nonfinite", "run_epoch"]

History = dict[str, list[float]]


@dataclass
class Loop:
    """What every epoch of one fit call shares.

    Attributes:
        reduction: how ``loss`` reduces over a batch, ``"mean"`` or ``"sum"``
            (its ``reduction`` attribute): how batch values add up to the epoch's.
        interrupts: Ctrl-C state (see ``_interrupt``).
        counts_correct: the targets are integer labels of a ``(batch, classes)``
            output, so accuracy is counted.
        on_step: called after each completed step with ``(params, state, epoch,
            steps done in the epoch, the epoch's loss total, its correct count)``
            (fit's checkpointing and Ctrl-C bookkeeping).
    """

    trainer: TrainStep
    X: Array
    Y: Array
    batch_size: int
    rng: Any
    on_nonfinite: str
    history: History
    bar: Any
    reduction: str
    interrupts: Interrupts
    counts_correct: bool
    on_step: Callable[[Params, Any, int, int, Any, Any], None] | None = None


def _take(xp: Any, A: Array, idx: Any, device: Any) -> Array:
    if isinstance(idx, slice) or xp is np:
        return A[idx, ...]
    return xp.take(A, xp.asarray(idx, device=device), axis=0)


def nonfinite(loop: Loop, params: Params, epoch: int, step: int, value: Any) -> None:
    """Handle a NaN/inf at ``(epoch, step)`` per ``loop.on_nonfinite``; ``params`` are the last finite ones."""
    msg = (
        f"fit: the loss or the updated params became NaN/inf at epoch {epoch}, step {step} "
        f"(loss {float(value)}). Lower the learning rate, check the data scale, or clip the gradients "
        "(e.g. pnn.optim.Adam(..., clip_norm=1.0), or clip_value=). The last finite params are kept."
    )
    if loop.on_nonfinite == "stop":
        warnings.warn(msg, RuntimeWarning, stacklevel=5)
        raise StopTraining(params)
    raise NonFiniteError(msg, params=params, epoch=epoch, step=step, history=loop.history)


def run_epoch(
    loop: Loop, params: Params, state: Any, order: np.ndarray | None, epoch: int,
    start: int = 0, total: Any = 0.0, correct: Any = None,
) -> tuple[Params, Any, float, Any]:
    """One epoch (from step ``start``, with that far's ``total`` and ``correct``: a resumed run).

    Returns params, state, the epoch's loss total, and correct predictions.

    The total is the sum of the batch losses weighted by their rows for a
    ``"mean"`` loss (divide by n for the mean) and plain for a ``"sum"`` loss.
    Ctrl-C is checked before each step: a pending one stops before the next
    step begins, so the params are always those after a whole step.

    Raises:
        NonFiniteError, StopTraining: a NaN/inf loss or updated param (per ``on_nonfinite``),
            carrying the params from before the step that made it.
        FitInterrupted: Ctrl-C, with the params after the last completed step.
    """
    X, Y, trainer = loop.X, loop.Y, loop.trainer
    xp = namespace(X)
    device = array_api_compat.device(X)
    weighted = loop.reduction != "sum"
    try:
        for step, idx in enumerate(batches(X.shape[0], loop.batch_size, order)):
            if step < start:
                continue
            loop.interrupts.raise_if_pending()
            Xb, Tb = _take(xp, X, idx, device), _take(xp, Y, idx, device)
            value, Yp, new_params, new_state, check = trainer.fit_step(params, state, Xb, Tb, loop.rng)
            if loop.on_nonfinite != "ignore" and not math.isfinite(float(check)):
                nonfinite(loop, params, epoch, step, value)
            params, state = new_params, new_state
            total = total + (value * Xb.shape[0] if weighted else value)  # on the device until the epoch ends
            c = n_correct(xp, Yp, Tb)
            if c is not None:
                correct = c if correct is None else correct + c
            if loop.bar is not None:
                loop.bar.update(1)
            if loop.on_step is not None:
                loop.on_step(params, state, epoch, step + 1, total, correct)
    except KeyboardInterrupt as e:
        raise FitInterrupted(params, loop.history) from e
    return params, state, float(total), correct


class StepRunner:
    """fit's portable mode: one epoch per call, step by step (see :func:`run_epoch`)."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def chunk(self, remaining: int) -> int:
        """Epochs the next :meth:`run` covers."""
        return 1

    def run(
        self, params: Params, state: Any, orders: list[np.ndarray | None], epoch: int,
        start: int = 0, total: Any = 0.0, correct: Any = None,
    ) -> tuple[Params, Any, list[tuple[float, Any]]]:
        """Train one epoch per order (the first from step ``start``, see :func:`run_epoch`).

        Returns params, state and each epoch's ``(loss, n_correct)``.
        """
        stats = []
        for e, order in enumerate(orders):
            params, state, total, correct = run_epoch(
                self.loop, params, state, order, epoch + e, *((start, total, correct) if e == 0 else ())
            )
            n = self.loop.X.shape[0]
            stats.append((total / n if self.loop.reduction != "sum" else total, correct))
        return params, state, stats
