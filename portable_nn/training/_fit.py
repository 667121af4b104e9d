"""fit: minibatches, seeded shuffling, validation, early stopping, progress.

``fit`` is three parts: :func:`_prepare` validates every argument and the data
before any work; a runner trains chunks of epochs (``StepRunner``: the portable
code step by step; ``ScanRunner``: whole epochs compiled by ``jax.lax.scan``);
and per-epoch bookkeeping records the history, validates, and stops early.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._check import check_int
from .._errors import FitInterrupted, StopTraining
from .._rng import host_rng
from ..layers.base import Array, Layer, Params
from ..losses import reduction_of
from ._data import as_data, check_finite, check_labels, check_targets, params_backend
from ._evaluate import evaluate
from ._interrupt import Interrupts, interrupts_between_steps
from ._loop import History, Loop, StepRunner
from ._scan import ScanRunner
from ._step import TrainStep

__all__ = ["fit"]


def fit(
    model: Layer,
    params: Params,
    X: Any,
    Y: Any,
    *,
    loss: Any,
    optimizer: Any,
    epochs: int = 10,
    batch_size: int = 32,
    seed: int | None = 0,
    shuffle: bool = True,
    validation_data: tuple[Any, Any] | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    progress: bool | None = None,
    on_nonfinite: str = "raise",
    compile: bool | None = None,
) -> tuple[Params, History]:
    """Train ``model`` from ``params`` with minibatch ``optimizer`` steps.

    Args:
        model: a Layer (usually :class:`Sequential`).
        params: its params; they fix the backend, device and dtype.
        X: inputs, ``(n, ...)`` float. Host data (NumPy, lists) is copied to
            the params' device and floats are cast to their dtype; arrays of
            another library or device raise.
        Y: targets ``(n, ...)``: floats, or integer class labels ``(n,)``.
        loss: ``f(Y_pred, Y) -> (value, dY)``, e.g. ``pnn.losses.softmax_cross_entropy``;
            its ``reduction`` attribute (``"mean"``, the default, or ``"sum"``)
            says how batch values add up to the epoch's.
        optimizer: an object with ``init(params)`` and ``step(params, grads, state)``.
        epochs: passes over the data (>= 0).
        batch_size: rows per step (>= 1); the last batch may be smaller.
        seed: seeds shuffling and dropout (host RNG: same on every backend).
        shuffle: reshuffle the rows every epoch.
        validation_data: ``(X_val, Y_val)`` evaluated after each epoch.
        patience: stop after this many epochs without improvement of the
            validation loss (training loss without validation data) by more
            than ``min_delta`` (a finite number >= 0), and return the params of
            the best epoch (a NaN loss never counts as an improvement).
        progress: tqdm progress bar; ``None`` shows it only when stderr is a terminal.
        on_nonfinite: when the loss or the updated params are NaN/inf: ``"raise"``
            a :class:`NonFiniteError` carrying the last finite params and naming
            the step that made the NaN, ``"stop"`` and return them with a warning,
            or ``"ignore"``.
        compile: see :func:`compile_step`: ``None`` jits the step with
            ``jax.jit`` on JAX and runs chunks of whole epochs as one compiled
            ``lax.scan`` (models without host randomness; a chunk takes about a
            second); ``True`` also uses ``torch.compile`` on torch; ``False``
            always runs the portable code.

    Returns:
        ``(params, history)``; history maps ``"loss"``, ``"accuracy"`` (integer
        labels only), ``"val_loss"``, ``"val_accuracy"`` to one float per epoch.
        Losses are over the whole epoch as the loss reduces: the mean over
        rows for a ``"mean"`` loss, the sum for a ``"sum"`` loss.

    Every check (data, labels against the model's output width, validation
    data) runs before the first step. Ctrl-C stops between steps (between
    compiled chunks on JAX) and raises :class:`FitInterrupted`; during
    validation it stops at once. A Ctrl-C that arrives while the last step
    (or chunk) runs, with nothing left to do after it, lets fit return the
    finished run, with a warning.

    Raises:
        TypeError, ValueError: bad arguments or data (named in the message).
        NonFiniteError: see ``on_nonfinite``.
        FitInterrupted: on Ctrl-C, carrying the last completed step's params and
            the history of the completed epochs.
    """
    where = "fit"
    epochs = check_int(where, "epochs", epochs, 0)
    batch_size = check_int(where, "batch_size", batch_size, 1)
    if on_nonfinite not in ("raise", "stop", "ignore"):
        raise ValueError(f"fit: on_nonfinite must be 'raise', 'stop' or 'ignore', got {on_nonfinite!r}.")
    if patience is not None:
        patience = check_int(where, "patience", patience, 1)
    min_delta = _check_min_delta(min_delta)
    reduction = reduction_of(loss)
    plan = _prepare(model, params, X, Y, loss, validation_data)
    n = plan.X.shape[0]
    trainer = TrainStep(model, loss, optimizer, compile)
    shuffle_rng, dropout_rng = host_rng(seed).spawn(2)
    state = optimizer.init(params)
    history: History = {"loss": []}
    best, since_best = (math.inf, params), 0
    bar = _progress_bar(progress, epochs * -(-n // batch_size))
    epoch = done = 0  # epochs trained; epochs trained and validated
    with interrupts_between_steps() as interrupts:
        loop = Loop(trainer, plan.X, plan.Y, batch_size, dropout_rng, on_nonfinite, history, bar, reduction,
                    interrupts, plan.counts_correct)
        runner: StepRunner | ScanRunner = StepRunner(loop)
        if n >= batch_size and trainer.uses_jit(plan.X):
            runner = ScanRunner(runner, one_epoch=plan.validation is not None or patience is not None)
        try:
            while epoch < epochs:
                orders = [shuffle_rng.permutation(n) if shuffle else None
                          for _ in range(runner.chunk(epochs - epoch))]
                params, state, stats = runner.run(params, state, orders, epoch)
                for epoch_loss, correct in stats:
                    _record(history, epoch_loss, correct, n)
                epoch += len(stats)
                done = epoch if plan.validation is None else done
                if epoch < epochs:
                    interrupts.raise_if_pending()
                monitored = _end_of_epoch(model, params, history, plan, loss, interrupts, bar)
                done = epoch
                if patience is not None:
                    if monitored < best[0] - min_delta:
                        best, since_best = (monitored, params), 0  # params are never updated in place
                    else:
                        since_best += 1
                        if since_best >= patience:
                            return best[1], history
        except StopTraining as stop:
            return stop.params, history
        except FitInterrupted:
            raise
        except KeyboardInterrupt as e:
            raise FitInterrupted(params, {k: v[:done] for k, v in history.items()}) from e
        finally:
            if bar is not None:
                bar.close()
    if interrupts.pending:
        warnings.warn("fit: Ctrl-C arrived while the last step ran; the run finished.", RuntimeWarning, stacklevel=2)
    return params, history


@dataclass
class _Plan:
    """The data :func:`fit` checked and moved at entry."""

    X: Array
    Y: Array
    validation: tuple[Array, Array] | None
    counts_correct: bool


def _prepare(model: Layer, params: Params, X: Any, Y: Any, loss: Any, validation_data: Any) -> _Plan:
    """Move and check the data, and run the model and the loss on one row, so that bad data,
    labels or validation data fail here, with fit's names, before any training."""
    where = "fit"
    xp, device, dtype = params_backend(params, where)
    X = as_data(where, "X", X, xp, device, dtype, labels_ok=False)
    Y = as_data(where, "Y", Y, xp, device, dtype, labels_ok=True)
    n = X.shape[0]
    if Y.shape[0] != n:
        raise ValueError(f"fit: X has {n} rows but Y has {Y.shape[0]}; they must have the same length.")
    if n == 0:
        raise ValueError("fit: X is empty (0 rows).")
    check_finite(where, "X", X, xp)
    check_finite(where, "Y", Y, xp)
    Yp = model.apply(params, X[:1, ...])[0]
    try:
        loss(Yp, Y[:1, ...])
    except (TypeError, ValueError) as e:
        raise type(e)(f"fit: Y does not fit the model's output and the loss: {e}") from None
    counts_correct = check_targets(where, "Y", Y, Yp, xp)
    validation = None
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise TypeError("fit: validation_data must be a pair (X_val, Y_val).")
        Xv = as_data(where, "X_val", validation_data[0], xp, device, dtype, labels_ok=False)
        Yv = as_data(where, "Y_val", validation_data[1], xp, device, dtype, labels_ok=True)
        if Xv.shape[0] != Yv.shape[0]:
            raise ValueError(f"fit: X_val has {Xv.shape[0]} rows but Y_val has {Yv.shape[0]}.")
        if Xv.shape[0] == 0:
            raise ValueError("fit: X_val is empty (0 rows); pass validation data with rows, or none.")
        for name, A, ref in (("X_val", Xv, X), ("Y_val", Yv, Y)):
            if tuple(A.shape[1:]) != tuple(ref.shape[1:]) or A.dtype != ref.dtype:
                what = name.partition("_")[0]
                raise ValueError(
                    f"fit: {name} has shape {tuple(A.shape)} and dtype {A.dtype} but {what} has "
                    f"{tuple(ref.shape)} and {ref.dtype}; each row must look like a row of {what}."
                )
        check_finite(where, "X_val", Xv, xp)
        check_finite(where, "Y_val", Yv, xp)
        if counts_correct:
            check_labels(where, "Y_val", Yv, int(Yp.shape[1]), xp)
        validation = (Xv, Yv)
    return _Plan(X, Y, validation, counts_correct)


def _check_min_delta(min_delta: Any) -> float:
    ok = isinstance(min_delta, (int, float, np.integer, np.floating)) and not isinstance(min_delta, bool)
    if not ok or not math.isfinite(min_delta) or min_delta < 0:
        raise ValueError(f"fit: min_delta must be a finite number >= 0, got {min_delta!r}.")
    return float(min_delta)


def _end_of_epoch(
    model: Layer, params: Params, history: History, plan: _Plan, loss: Any, interrupts: Interrupts, bar: Any
) -> float:
    """Validate (Ctrl-C stops it at once) and show progress. Returns the monitored loss."""
    monitored = history["loss"][-1]
    if plan.validation is not None:
        with interrupts.at_once():
            vl, va = evaluate(model, params, *plan.validation, loss=loss)
        history.setdefault("val_loss", []).append(vl)
        if va is not None:
            history.setdefault("val_accuracy", []).append(va)
        monitored = vl
    if bar is not None:
        bar.set_postfix({key: f"{v[-1]:.4g}" for key, v in history.items()}, refresh=False)
    return monitored


def _record(history: History, epoch_loss: float, n_correct: Any, n: int) -> None:
    """Append one epoch's training loss (and accuracy, for integer labels) to the history."""
    history["loss"].append(epoch_loss)
    if n_correct is not None:
        history.setdefault("accuracy", []).append(int(n_correct) / n)


def _progress_bar(progress: bool | None, total: int) -> Any:
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="fit", leave=True, mininterval=0.25)
