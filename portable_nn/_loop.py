"""fit's inner loop: one epoch step by step.

Each step checks the loss and gradients for NaN/inf *before* updating, so the
params in hand are always the last finite ones; when fit owns the params
(its copies on NumPy, CuPy or torch) the update is added in place; and Ctrl-C
is honoured between steps, never inside one.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from ._backend import namespace
from ._errors import NonFiniteError
from ._layer import Array, Params
from .step import TrainStep, n_correct

__all__ = ["FitInterrupted", "History", "Loop", "StopTraining", "batches", "run_epoch"]

History = dict[str, list[float]]


class FitInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit`. ``params`` are those after the last completed step.

    (On JAX, where fit runs whole chunks of epochs as one compiled loop, the
    last completed chunk.)
    """

    def __init__(self, params: Params, history: History) -> None:
        super().__init__("fit interrupted; the last completed step's params are on .params")
        self.params = params
        self.history = history


class StopTraining(Exception):
    """Internal: on_nonfinite='stop' ends training with these params."""

    def __init__(self, params: Params) -> None:
        self.params = params


@dataclass
class Loop:
    """What every epoch of one fit call shares.

    Attributes:
        owned: the params are fit's own copies on a mutable backend: updates
            are added into them in place (``TrainStep.update(owned=True)``).
        interrupted: non-empty once Ctrl-C was pressed (see ``_interrupt``).
    """

    trainer: TrainStep
    X: Array
    Y: Array
    batch_size: int
    rng: Any
    on_nonfinite: str
    history: History
    bar: Any
    owned: bool
    interrupted: list[int]


def batches(n: int, batch_size: int, order: np.ndarray | None) -> list[Any]:
    """Index slices (or host index arrays when shuffled) covering 0..n-1."""
    starts = range(0, n, batch_size)
    if order is None:
        return [slice(i, min(i + batch_size, n)) for i in starts]
    return [order[i : i + batch_size] for i in starts]


def _take(xp: Any, A: Array, idx: Any, device: Any) -> Array:
    if isinstance(idx, slice) or xp is np:
        return A[idx, ...]
    return xp.take(A, xp.asarray(idx, device=device), axis=0)


def run_epoch(
    loop: Loop, params: Params, state: Any, order: np.ndarray | None, epoch: int
) -> tuple[Params, Any, float, Any]:
    """One epoch. Returns params, state, the summed loss x rows, and correct predictions.

    Raises:
        NonFiniteError, StopTraining: a NaN/inf loss or gradient (per ``on_nonfinite``).
        FitInterrupted: Ctrl-C, with the params after the last completed step.
    """
    X, Y, trainer = loop.X, loop.Y, loop.trainer
    xp = namespace(X)
    device = array_api_compat.device(X)
    total: Any = 0.0
    correct = None
    try:
        for step, idx in enumerate(batches(X.shape[0], loop.batch_size, order)):
            Xb, Tb = _take(xp, X, idx, device), _take(xp, Y, idx, device)
            value, Yp, grads, check = trainer.grads(params, Xb, Tb, loop.rng)
            if loop.on_nonfinite != "ignore" and not math.isfinite(float(check)):
                msg = (
                    f"fit: the loss or a gradient became NaN/inf at epoch {epoch}, step {step} "
                    f"(loss {float(value)}). Lower the learning rate, check the data scale, "
                    "or clip gradients. The last finite params are kept."
                )
                if loop.on_nonfinite == "stop":
                    warnings.warn(msg, RuntimeWarning, stacklevel=4)
                    raise StopTraining(params)
                raise NonFiniteError(msg, params=params, epoch=epoch, step=step, history=loop.history)
            params, state = trainer.update(params, grads, state, Xb, owned=loop.owned)
            total = total + value * Xb.shape[0]  # stays on the device until the epoch ends
            c = n_correct(xp, Yp, Tb)
            if c is not None:
                correct = c if correct is None else correct + c
            if loop.bar is not None:
                loop.bar.update(1)
            if loop.interrupted:
                raise KeyboardInterrupt
    except KeyboardInterrupt as e:
        raise FitInterrupted(params, loop.history) from e
    return params, state, float(total), correct
