"""fit: minibatches, seeded shuffling, validation, early stopping, progress.

``fit`` is three parts: :func:`_prepare` validates every argument and the data
before any work; a runner trains chunks of epochs (``StepRunner``: the portable
code step by step; ``ScanRunner``: whole epochs compiled by ``jax.lax.scan``);
and per-epoch bookkeeping records the history, validates, and stops early.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from functools import partial
from typing import Any, Protocol

from .._check import check_int, real_number
from .._errors import FitInterrupted, StopTraining
from .._rng import host_rng
from ..backends import namespace
from ..layers.base import Layer, Params, trainable
from ..losses import reduction_of, unchecked
from ..schedules import ReduceOnPlateau
from ._checkpoint import Checkpointer, RunState, fingerprint
from ._dask_data import is_dask
from ._data import label_count, prepare
from ._epoch_end import after_epoch, validate_epoch
from ._evaluate import evaluate
from ._interrupt import interrupts_between_steps
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
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    reduce_lr: ReduceOnPlateau | None = None,
    client: Any = None,
    accumulate: int = 1,
) -> tuple[Params, History]:
    """Train ``model`` from ``params`` with minibatch ``optimizer`` steps.

    Args:
        model: a Layer (usually :class:`Sequential`).
        params: its params; they fix the backend, device and dtype. For a model
            with a model state (BatchNorm) its ``Variables(params, state)``: the
            optimizer trains ``params``, the state is updated by the forward
            passes, and the Variables come back.
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
        checkpoint: a file to save the run to (atomically, safetensors, never
            pickle): params, optimizer state, epoch and step, both RNG states,
            the history, the early-stopping bookkeeping, and a fingerprint of
            the model, loss, optimizer, settings and data. Also written on Ctrl-C
            before :class:`FitInterrupted` is raised.
        checkpoint_every: save every this many steps; ``None`` (default): at the
            end of every epoch. On JAX's compiled path saves happen between
            compiled chunks (the first chunk boundary after each multiple).
        resume: continue from ``checkpoint`` when the file exists (start afresh
            when it does not). The result equals an uninterrupted run's bit for
            bit on the portable path. A file written for another model, loss,
            optimizer, settings or data raises :class:`CheckpointError` and is
            left as it is.
        callbacks: objects with ``on_epoch_end(epoch, history, params)``, called
            after each epoch's validation; one that returns True stops training
            (fit returns the current params).
        reduce_lr: a :class:`~portable_nn.schedules.ReduceOnPlateau`: scale the
            learning rate down (the optimizer state's ``lr_scale``) when the
            monitored loss (as for ``patience``) stops improving.
        client: a ``distributed.Client``: train data-parallel on its workers,
            each holding a row shard and a params replica; the params equal one
            process's to rounding (see README, "Past one machine"). Dask arrays
            as X, Y or validation data are streamed block by block (shuffled
            blocks, shuffled rows within each block, about two blocks in memory).
            Neither supports ``checkpoint`` yet.
        accumulate: with ``client``, each worker runs its part of every batch as
            this many micro-batches (same result, less memory).

    Returns:
        ``(params, history)``; history maps ``"loss"``, ``"accuracy"`` (integer
        labels only), ``"val_loss"``, ``"val_accuracy"`` and ``"lr"`` (the
        learning rate of the epoch's last step, where the optimizer has a
        ``learning_rate``) to one float per epoch.
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
    if checkpoint_every is not None:
        checkpoint_every = check_int(where, "checkpoint_every", checkpoint_every, 1)
    if resume and checkpoint is None:
        raise ValueError("fit: resume=True needs checkpoint='run.safetensors' (the file to resume from).")
    callbacks = _check_callbacks(callbacks)
    if reduce_lr is not None and not isinstance(reduce_lr, ReduceOnPlateau):
        raise TypeError(
            f"fit: reduce_lr must be a pnn.schedules.ReduceOnPlateau, got {type(reduce_lr).__name__}."
        )
    min_delta = real_number("fit", "min_delta", min_delta, lo=0.0)
    reduction = reduction_of(loss)
    if client is not None or accumulate != 1 or is_dask(X, Y, validation_data):
        from ._dask_fit import fit_dask

        return fit_dask(model, params, X, Y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
                        seed=seed, shuffle=shuffle, validation_data=validation_data, patience=patience,
                        min_delta=min_delta, progress=progress, on_nonfinite=on_nonfinite, compile=compile,
                        callbacks=callbacks, reduce_lr=reduce_lr, reduction=reduction, client=client,
                        accumulate=accumulate, checkpoint=checkpoint)
    plan = prepare(model, params, X, Y, loss, validation_data, batch_size)
    n = plan.X.shape[0]
    n_labels = label_count(plan.Y)
    steps_per_epoch = -(-n // batch_size)
    trainer = TrainStep(model, loss, optimizer, compile)
    if trainer.compiler(plan.X) is None:  # the portable step: the data were checked above, once
        trainer.loss = unchecked(loss, namespace(plan.X))
    shuffle_rng, dropout_rng = host_rng(seed).spawn(2)
    run = RunState(params, optimizer.init(trainable(params)), history={"loss": []})
    ckpt = None
    if checkpoint is not None:
        settings = {"batch_size": batch_size, "shuffle": shuffle, "seed": seed, "patience": patience,
                    "reduce_lr": repr(reduce_lr)}
        prints = fingerprint(model, loss, optimizer, plan.X, plan.Y, settings)
        ckpt = Checkpointer(checkpoint, checkpoint_every, prints, params)
        loaded = ckpt.load() if resume else None
        if loaded is not None:
            run = loaded
            shuffle_rng.bit_generator.state = run.shuffle_state
            dropout_rng.bit_generator.state = run.dropout_state
    params, state, history = run.params, run.opt_state, run.history
    if reduce_lr is not None and not hasattr(state, "lr_scale"):
        raise TypeError(
            f"fit: reduce_lr needs an optimizer whose state has an lr_scale field (pnn.optim's do); "
            f"{type(optimizer).__name__}'s state is a {type(state).__name__}."
        )
    best = (run.best_loss, params if run.best_params is None else run.best_params)
    bar = _progress_bar(progress, epochs * steps_per_epoch, run.epoch * steps_per_epoch + run.step)

    def on_step(p: Params, s: Any, epoch: int, step: int, total: Any, correct: Any) -> None:
        run.params, run.opt_state, run.epoch, run.step, run.total, run.correct = p, s, epoch, step, total, correct
        run.steps_done = epoch * steps_per_epoch + step
        run.dropout_state = dropout_rng.bit_generator.state  # (about 1 us: only when checkpointing)
        if ckpt is not None and ckpt.due(run.steps_done):
            ckpt.save(run)

    with interrupts_between_steps() as interrupts:
        loop = Loop(trainer, plan.X, plan.Y, batch_size, dropout_rng, on_nonfinite, history, bar, reduction,
                    interrupts, plan.counts_correct, None if ckpt is None else on_step)
        runner: StepRunner | ScanRunner = StepRunner(loop)
        if n >= batch_size and trainer.uses_jit(plan.X):
            per_epoch = plan.validation is not None or patience is not None or reduce_lr is not None or callbacks
            runner = ScanRunner(runner, one_epoch=bool(per_epoch))
        epoch = run.epoch
        try:
            while epoch < epochs and not run.stopped:
                run.shuffle_state = shuffle_rng.bit_generator.state  # this epoch's order is drawn from it
                orders = [shuffle_rng.permutation(n) if shuffle else None
                          for _ in range(1 if run.step else runner.chunk(epochs - epoch))]
                params, state, stats = runner.run(params, state, orders, epoch, run.step, run.total, run.correct)
                before = run.steps_done
                for (epoch_loss, correct), lr in zip(stats, _epoch_lrs(optimizer, state, len(stats), steps_per_epoch),
                                                     strict=True):
                    _record(history, epoch_loss, correct, n_labels, lr)
                epoch += len(stats)
                if (run.epoch, run.step) != (epoch - 1, steps_per_epoch):  # no on_step ran (no checkpoint, or a
                    # compiled chunk): the last epoch's steps are done, its validation not yet (a resume point)
                    run.params, run.opt_state, run.epoch, run.step = params, state, epoch - 1, steps_per_epoch
                    run.total = stats[-1][0] * (1 if reduction == "sum" else n)
                    run.correct, run.steps_done = stats[-1][1], epoch * steps_per_epoch
                    run.dropout_state = dropout_rng.bit_generator.state
                validate = None if plan.validation is None else partial(evaluate, model, params, *plan.validation,
                                                                        loss=loss)
                monitored = validate_epoch(history, validate, interrupts, bar)
                best, state = after_epoch(run, best, monitored, params, state, epoch, history, patience=patience,
                                          min_delta=min_delta, reduce_lr=reduce_lr, callbacks=callbacks)
                run.epoch, run.step, run.total, run.correct = epoch, 0, 0.0, None
                run.best_loss, run.best_params = best[0], None if patience is None else best[1]
                run.shuffle_state = shuffle_rng.bit_generator.state
                if ckpt is not None and (ckpt.every is None or run.steps_done // ckpt.every > before // ckpt.every
                                         or run.stopped or epoch == epochs):
                    ckpt.save(run)
                if epoch < epochs and not run.stopped:
                    interrupts.raise_if_pending()
        except StopTraining as stop:
            return stop.params, history
        except KeyboardInterrupt as e:
            if ckpt is not None:
                ckpt.save(run)
            if isinstance(e, FitInterrupted):
                raise
            raise FitInterrupted(run.params, {k: v[: run.epoch] for k, v in history.items()}) from e
        finally:
            if bar is not None:
                bar.close()
    if interrupts.pending:
        warnings.warn("fit: Ctrl-C arrived while the last step ran; the run finished.", RuntimeWarning, stacklevel=2)
    if patience is not None and run.since_best >= patience:
        return best[1], history
    return params, history


class Callback(Protocol):
    """What ``fit(..., callbacks=[...])`` calls after each epoch's validation."""

    def on_epoch_end(self, epoch: int, history: History, params: Params) -> bool | None:
        """``epoch`` is 0-based; ``history`` holds every completed epoch. Return True to stop training."""


def _check_callbacks(callbacks: Any) -> tuple[Callback, ...]:
    if callbacks is None or not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"fit: callbacks must be a list of objects with on_epoch_end, got {type(callbacks).__name__}.")
    for i, cb in enumerate(callbacks):
        if not callable(getattr(cb, "on_epoch_end", None)):
            raise TypeError(
                f"fit: callbacks[{i}] ({type(cb).__name__}) has no on_epoch_end(epoch, history, params) method."
            )
    return tuple(callbacks)

def _record(history: History, epoch_loss: float, n_correct: Any, n_labels: int, lr: float | None) -> None:
    """Append one epoch's training loss (accuracy, for integer labels; lr, where known) to the history."""
    history["loss"].append(epoch_loss)
    if n_correct is not None:
        history.setdefault("accuracy", []).append(int(n_correct) / n_labels)
    if lr is not None:
        history.setdefault("lr", []).append(lr)


def _epoch_lrs(optimizer: Any, state: Any, k: int, steps_per_epoch: int) -> list[float | None]:
    """The learning rate of the last step of each of the last ``k`` epochs (``state`` is after them), or Nones."""
    learning_rate = getattr(optimizer, "learning_rate", None)
    if learning_rate is None:
        return [None] * k
    if not hasattr(state, "count") or not hasattr(state, "_replace"):
        return [float(learning_rate(state))] * k
    count = int(state.count)  # the next step's; each epoch's last step is one before its end
    return [float(learning_rate(state._replace(count=count - 1 - (k - 1 - i) * steps_per_epoch))) for i in range(k)]


def _progress_bar(progress: bool | None, total: int, done: int = 0) -> Any:
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, unit="step", desc="fit", leave=True, mininterval=0.25)
