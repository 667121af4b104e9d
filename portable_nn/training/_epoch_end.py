"""What fit does at the end of each epoch, the same on the in-memory and the Dask paths: validation
and progress (:func:`validate_epoch`), then early stopping (``patience``), ``ReduceOnPlateau`` and the
callbacks (:func:`after_epoch`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..layers.base import Params
from ..schedules import ReduceOnPlateau
from ._checkpoint import RunState
from ._interrupt import Interrupts

__all__ = ["after_epoch", "validate_epoch"]


def validate_epoch(
    history: dict[str, list[float]], validate: Callable[[], tuple[float, float | None]] | None,
    interrupts: Interrupts, bar: Any,
) -> float:
    """Run ``validate()`` (Ctrl-C stops it at once), record it, show progress; return the monitored loss.

    ``validate`` returns ``(val_loss, val_accuracy or None)``; None: no validation data, the
    training loss is monitored.
    """
    monitored = history["loss"][-1]
    if validate is not None:
        with interrupts.at_once():
            vl, va = validate()
        history.setdefault("val_loss", []).append(vl)
        if va is not None:
            history.setdefault("val_accuracy", []).append(va)
        monitored = vl
    if bar is not None:
        bar.set_postfix({key: f"{v[-1]:.4g}" for key, v in history.items()}, refresh=False)
    return monitored


def after_epoch(
    run: RunState, best: tuple[float, Params], monitored: float, params: Params, state: Any, epoch: int,
    history: dict[str, list[float]], *, patience: int | None, min_delta: float,
    reduce_lr: ReduceOnPlateau | None, callbacks: Sequence[Any],
) -> tuple[tuple[float, Params], Any]:
    """Update ``run``'s stopping bookkeeping for the epoch that just ended (``epoch`` epochs done).

    Returns the best ``(loss, params)`` so far and the optimizer state (its
    ``lr_scale`` lowered when ``reduce_lr`` says so); sets ``run.stopped`` when
    patience runs out or a callback returns True.
    """
    if patience is not None:
        if monitored < best[0] - min_delta:
            best, run.since_best = (monitored, params), 0  # params are never updated in place
        else:
            run.since_best += 1
            run.stopped = run.since_best >= patience
    if reduce_lr is not None:
        run.plateau_best, run.plateau_wait, scale = reduce_lr.update(
            run.plateau_best, run.plateau_wait, float(state.lr_scale), monitored
        )
        if scale != float(state.lr_scale):
            state = run.opt_state = state._replace(lr_scale=scale)
    run.stopped = run.stopped or any(bool(cb.on_epoch_end(epoch - 1, history, params)) for cb in callbacks)
    return best, state
