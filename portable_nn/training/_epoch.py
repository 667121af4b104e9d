"""The portable runner: one epoch step by step, from any :class:`~._source.Source`.

Each step computes the new params functionally, so the params from before a
step that made a NaN/inf are still in hand; the portable step reads only its
loss, the params are checked at the end of the epoch, and a NaN found either
way replays the epoch checking every step (see :func:`run_epoch`). Ctrl-C is
honoured between steps, never inside one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._errors import FitInterrupted, NonFiniteError, StopTraining
from ..backends import namespace
from ..layers.base import Array, Params
from ._interrupt import Interrupts
from ._source import Source
from ._step import TrainStep, finite_check, n_correct

__all__ = ["History", "Loop", "StepRunner", "epoch_lrs", "nonfinite", "record", "replace_state", "run_epoch"]

History = dict[str, list[float]]


@dataclass
class Loop:
    """What every epoch of one training run shares.

    Attributes:
        source: the training data.
        rng: dropout's host RNG.
        reduction: how ``loss`` reduces over a batch, ``"mean"`` or ``"sum"``
            (its ``reduction`` attribute): how batch values add up to the epoch's.
        interrupts: Ctrl-C state (see ``_interrupt``).
        on_step: called after each completed step with ``(params, state, epoch,
            steps done in the epoch, the epoch's loss total, its correct count)``
            (checkpointing's bookkeeping); None when nobody needs it.
        compiled: the step is compiled (it checks its loss and params in one read anyway).
        scaled: the optimizer scales the loss (``DynamicLossScale``): a step with non-finite grads is
            skipped, not an error, so each step's params are checked (its loss may be inf then).
        batch_weight: what a batch's value of a ``"mean"`` loss counts for in the epoch's:
            ``"samples"`` (the sum of its sample weights, or its rows: the epoch's loss is the
            weighted mean over all rows) or ``"rows"`` (its rows, also with sample weights:
            scikit-learn's ``loss_curve_``). The same without sample weights.
    """

    trainer: TrainStep
    source: Source
    batch_size: int
    rng: Any
    on_nonfinite: str
    history: History
    bar: Any
    reduction: str
    interrupts: Interrupts
    on_step: Callable[[Params, Any, int, int, Any, Any], None] | None = None
    compiled: bool = False
    scaled: bool = False
    batch_weight: str = "samples"

    def epoch_loss(self, total: Any) -> float:
        """The epoch's loss from its total: the mean over rows (weights) for a ``"mean"`` loss, else the sum."""
        return float(total) if self.reduction == "sum" else float(total) / self.epoch_weight()

    def epoch_weight(self) -> float:
        """What a ``"mean"`` loss's epoch total is divided by (see ``batch_weight``)."""
        return float(self.source.n) if self.batch_weight == "rows" else self.source.total_weight


def nonfinite(loop: Loop, params: Params, epoch: int, step: int, value: Any, stacklevel: int = 5) -> None:
    """Handle a NaN/inf at ``(epoch, step)`` per ``loop.on_nonfinite``; ``params`` are the last finite ones.

    ``stacklevel``: the warning's, pointing at fit's caller.
    """
    msg = (
        f"fit: the loss or the updated params became NaN/inf at epoch {epoch}, step {step} "
        f"(loss {float(value)}). Lower the learning rate, check the data scale, or clip the gradients "
        "(e.g. pnn.optim.Adam(..., clip_norm=1.0), or clip_value=). The last finite params are kept."
    )
    if loop.on_nonfinite == "stop":
        warnings.warn(msg, RuntimeWarning, stacklevel=stacklevel)
        raise StopTraining(params)
    raise NonFiniteError(msg, params=params, epoch=epoch, step=step, history=loop.history)


class _SeenNonFinite(Exception):
    """The loss-only pass met a NaN/inf (a loss, or the params at the end): replay the epoch checking every step."""

    def __init__(self, step: int, value: Any) -> None:
        self.step, self.value = step, value


def run_epoch(
    loop: Loop, params: Params, state: Any, order: np.ndarray | None, epoch: int,
    start: int = 0, total: Any = 0.0, correct: Any = None,
) -> tuple[Params, Any, Any, Any]:
    """One epoch (from step ``start``, with that far's ``total`` and ``correct``: a resumed run).

    Returns params, state, the epoch's loss total, and correct predictions.

    The total is the sum of the batch losses weighted by their rows (their
    sample weights) for a ``"mean"`` loss, and plain for a ``"sum"`` loss.
    Ctrl-C is checked before each step: a pending one stops before the next
    step begins, so the params are always those after a whole step.

    NaN/inf: a compiled step, and any step when checkpointing (``on_step``),
    checks its loss and its new params in one host read. The portable step
    without ``on_step`` reads only its loss, and the params are checked at the
    end of the epoch, on Ctrl-C and when a step raises (a user's loss that
    rejects NaN predictions; NaN params show in the next step's loss anyway);
    when any check fails, the epoch is replayed from its start (the step is
    deterministic: params, optimizer state and the dropout RNG's state are
    kept, and a source gives the same batches for the same order) checking
    every step, so the error names the same step and carries the same params
    as a per-step check would.

    Raises:
        NonFiniteError, StopTraining: a NaN/inf loss or updated param (per ``on_nonfinite``),
            carrying the params from before the step that made it.
        FitInterrupted: Ctrl-C, with the params after the last completed step.
    """
    lazy = loop.on_nonfinite != "ignore" and loop.on_step is None and not loop.compiled and not loop.scaled
    if not lazy:
        return _steps(loop, params, state, order, epoch, start, total, correct, "every")
    rng_state = None if loop.rng is None else loop.rng.bit_generator.state
    try:
        return _steps(loop, params, state, order, epoch, start, total, correct, "loss")
    except _SeenNonFinite as seen:
        if loop.rng is not None:
            loop.rng.bit_generator.state = rng_state
        replay = replace(loop, bar=None, interrupts=Interrupts())  # a pending Ctrl-C waits for the replay
        _steps(replay, params, state, order, epoch, start, total, correct, "every")
        # not found again (a step that is not deterministic): the epoch's first params are finite
        nonfinite(loop, params, epoch, seen.step, seen.value)
        raise AssertionError("unreachable") from None


def _steps(
    loop: Loop, params: Params, state: Any, order: np.ndarray | None, epoch: int,
    start: int, total: Any, correct: Any, check: str,
) -> tuple[Params, Any, Any, Any]:
    """:func:`run_epoch`'s loop; ``check``: ``"every"`` step's params, or only the ``"loss"`` (then it
    raises ``_SeenNonFinite`` for a NaN/inf loss or, at the end or on Ctrl-C, params)."""
    trainer, source = loop.trainer, loop.source
    weighted = loop.reduction != "sum"
    by_rows = loop.batch_weight == "rows"
    checks = loop.on_nonfinite != "ignore"
    full = check == "every"
    step, value, xp = start, None, None
    lazy = checks and not full  # the params of the steps so far are not checked yet
    outputs: list[tuple[Array, Array]] | None = [] if source.counts_correct and loop.on_step is None else None
    try:
        for step, (Xb, Tb, Wb) in source.batches(order, loop.batch_size, start):
            loop.interrupts.raise_if_pending()
            value, Yp, new_params, new_state, ok = trainer.fit_step(params, state, Xb, Tb, loop.rng,
                                                                    full and checks, Wb)
            if checks and not math.isfinite(float(ok)):
                if not full:
                    raise _SeenNonFinite(step, value)
                nonfinite(loop, params, epoch, step, value, stacklevel=6)
            params, state = new_params, new_state
            if weighted:  # the total stays on the device until the epoch ends
                total = total + value * (Xb.shape[0] if Wb is None or by_rows else _sum(Wb))
            else:
                total = total + value
            if source.counts_correct:
                xp = xp or namespace(Yp)
                if outputs is not None:  # counted every _COUNT_EVERY steps: a few array calls fewer per step;
                    # the predicted classes are kept, not the outputs (a language model's logits are
                    # (batch, seq, vocab): _COUNT_EVERY of them held tens of times a step's memory)
                    outputs.append((xp.argmax(Yp, axis=-1), Tb))
                    if len(outputs) == _COUNT_EVERY:
                        correct = _count(xp, outputs, correct)
                else:
                    c = n_correct(xp, Yp, Tb)
                    correct = c if correct is None else correct + c
            if loop.bar is not None:
                loop.bar.update(1)
            if loop.on_step is not None:
                loop.on_step(params, state, epoch, step + 1, total, correct)
    except _SeenNonFinite:
        raise
    except KeyboardInterrupt as e:
        if lazy and _nonfinite_since(value, params):
            raise _SeenNonFinite(step, value) from None
        if isinstance(e, FitInterrupted):
            raise
        raise FitInterrupted(params, loop.history, state) from e
    except Exception:
        # a later step failed on the hidden NaN params (a user's loss or layer that rejects NaN inputs):
        # a per-step check would have stopped at the step that made them, before this error
        if lazy and _nonfinite_since(value, params):
            raise _SeenNonFinite(step, value) from None
        raise
    if lazy and _nonfinite_since(value, params):
        raise _SeenNonFinite(step, value)
    if outputs:
        correct = _count(xp, outputs, correct)
    return params, state, total, correct


def _sum(W: Array) -> Array:
    return namespace(W).sum(W)


def _nonfinite_since(value: Any, params: Params) -> bool:
    """The last step's loss ``value`` or its ``params`` are NaN/inf (False before the first step: ``value`` None)."""
    return value is not None and not math.isfinite(float(finite_check(value, params)))


_COUNT_EVERY = 32


def _count(xp: Any, outputs: list[tuple[Array, Array]], correct: Any) -> Any:
    """``correct`` plus the correct predictions of the ``(predicted classes, labels)`` batches in ``outputs``
    (emptied)."""
    P = outputs[0][0] if len(outputs) == 1 else xp.concat([p for p, _ in outputs], axis=0)
    T = outputs[0][1] if len(outputs) == 1 else xp.concat([t for _, t in outputs], axis=0)
    outputs.clear()
    c = xp.sum(xp.astype(P == T, xp.int32))
    return c if correct is None else correct + c


class StepRunner:
    """The portable runner: one epoch per call, step by step (see :func:`run_epoch`)."""

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
            stats.append((self.loop.epoch_loss(total), correct))
        return params, state, stats

    def close(self) -> None:
        """Nothing to release."""


def record(history: History, epoch_loss: float, n_correct: Any, n_labels: int, lr: float | None) -> None:
    """Append one epoch's training loss (accuracy, for integer labels; lr, where known) to the history."""
    history["loss"].append(epoch_loss)
    if n_correct is not None:
        history.setdefault("accuracy", []).append(int(n_correct) / n_labels)
    if lr is not None:
        history.setdefault("lr", []).append(lr)


def epoch_lrs(optimizer: Any, state: Any, k: int, steps_per_epoch: int) -> list[float | None]:
    """The learning rate of the last step of each of the last ``k`` epochs (``state`` is after them), or Nones."""
    learning_rate = getattr(optimizer, "learning_rate", None)
    if learning_rate is None:
        return [None] * k
    if not hasattr(state, "count") or not hasattr(state, "_replace"):
        return [float(learning_rate(state))] * k
    count = int(state.count)  # the next step's; each epoch's last step is one before its end (a loss-scaled
    # optimizer counts the steps it applied: none yet, the next step's rate)
    return [float(learning_rate(replace_state(state, count=max(0, count - 1 - (k - 1 - i) * steps_per_epoch))))
            for i in range(k)]


def replace_state(state: Any, **fields: Any) -> Any:
    """``state._replace(**fields)``, into the ``inner`` state of a wrapper's state (``DynamicLossScale``'s)."""
    if hasattr(state, "inner") and hasattr(state, "_replace"):
        return state._replace(inner=replace_state(state.inner, **fields))
    return state._replace(**fields)
