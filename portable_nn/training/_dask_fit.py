"""fit on Dask data (streamed block by block) or on a Dask cluster (``client=``).

:func:`fit` hands over here when X, Y or the validation data are Dask arrays,
or when a ``client`` is given. The per-epoch bookkeeping (history,
validation, early stopping, ``reduce_lr``, callbacks, Ctrl-C) is fit's; an
epoch runner does the steps: :class:`StreamEpochs` in this process, or
``ClusterEpochs`` (``_dask_parallel``) on the cluster's workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, cast

import numpy as np

from .._check import check_int
from .._errors import FitInterrupted, StopTraining
from .._rng import host_rng
from ..layers.base import Layer, Params, trainable
from ._checkpoint import RunState
from ._dask_data import DaskData, as_dask_pair, check_dask_data, evaluate_blocks, is_dask, stream_batches
from ._data import Plan, prepare
from ._epoch_end import after_epoch, validate_epoch
from ._evaluate import evaluate
from ._fit import _epoch_lrs, _progress_bar, _record
from ._interrupt import Interrupts, interrupts_between_steps
from ._loop import History, Loop, nonfinite
from ._step import TrainStep, n_correct

__all__ = ["fit_dask", "Epochs", "Policy"]


@dataclass
class Policy:
    """What a step needs to report a NaN/inf (see ``_loop.nonfinite``) and Ctrl-C."""

    on_nonfinite: str
    history: History
    interrupts: Interrupts
    bar: Any

    def nonfinite(self, params: Params, epoch: int, step: int, value: Any) -> None:
        nonfinite(cast(Loop, self), params, epoch, step, value)

    def done_step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)


class Epochs(Protocol):
    """One epoch of steps: ``run(params, state, epoch) -> (params, state, loss total, correct)``."""

    def run(self, params: Params, state: Any, epoch: int) -> tuple[Params, Any, float, Any]: ...

    def close(self) -> None: ...


class StreamEpochs:
    """Steps in this process on Dask data, one block at a time (see :func:`stream_batches`)."""

    def __init__(self, trainer: TrainStep, data: DaskData, batch_size: int, shuffle_rng: np.random.Generator | None,
                 dropout_rng: np.random.Generator, policy: Policy, reduction: str) -> None:
        self.trainer, self.data, self.batch_size = trainer, data, batch_size
        self.shuffle_rng, self.dropout_rng, self.policy, self.reduction = shuffle_rng, dropout_rng, policy, reduction

    def run(self, params: Params, state: Any, epoch: int) -> tuple[Params, Any, float, Any]:
        xp, policy = self.data.xp, self.policy
        total: Any = 0.0
        correct = None
        try:
            for step, (Xb, Tb) in enumerate(stream_batches(self.data, self.batch_size, self.shuffle_rng)):
                policy.interrupts.raise_if_pending()
                value, Yp, new_params, new_state, check = self.trainer.fit_step(params, state, Xb, Tb, self.dropout_rng)
                if policy.on_nonfinite != "ignore" and not math.isfinite(float(check)):
                    policy.nonfinite(params, epoch, step, value)
                params, state = new_params, new_state
                total = total + (value * Xb.shape[0] if self.reduction != "sum" else value)
                c = n_correct(xp, Yp, Tb)
                if c is not None:
                    correct = c if correct is None else correct + c
                policy.done_step()
        except KeyboardInterrupt as e:
            if isinstance(e, FitInterrupted):
                raise
            raise FitInterrupted(params, policy.history) from e
        return params, state, float(total), correct

    def close(self) -> None:
        pass


def _validation(model: Layer, params: Params, X: Any, validation_data: Any, loss: Any, plan: Plan | None,
                n_classes: int | None) -> tuple[Any, bool] | None:
    """Checked validation data: ``(DaskData, counts)``, ``(in-memory pair, counts)``, or None."""
    if validation_data is None:
        return None
    if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
        raise TypeError("fit: validation_data must be a pair (X_val, Y_val).")
    Xv, Yv = validation_data
    if not is_dask(Xv, Yv) and plan is not None:  # in memory, like X: fit's own checks
        checked = prepare(model, params, plan.X[:1, ...], plan.Y[:1, ...], loss, (Xv, Yv)).validation
        assert checked is not None
        return checked, plan.counts_correct
    if not is_dask(Xv, Yv):
        import dask.array as da

        Xv = da.from_array(np.asarray(Xv), chunks=(max(X.chunks[0]),) + tuple(-1 for _ in np.shape(Xv)[1:]))
    Xv, Yv = as_dask_pair("fit", ("X_val", "Y_val"), Xv, Yv)
    row_shape = tuple(X.shape[1:])
    if tuple(Xv.shape[1:]) != row_shape:
        raise ValueError(
            f"fit: X_val has shape {tuple(Xv.shape)} but X has {tuple(X.shape)}; each row must look like a row of X."
        )
    return check_dask_data("fit", model, params, Xv, Yv, loss, ("X_val", "Y_val"), n_classes)


def fit_dask(
    model: Layer, params: Params, X: Any, Y: Any, *, loss: Any, optimizer: Any, epochs: int, batch_size: int,
    seed: Any, shuffle: bool, validation_data: Any, patience: int | None, min_delta: float, progress: bool | None,
    on_nonfinite: str, compile: bool | None, callbacks: tuple[Any, ...], reduce_lr: Any, reduction: str,
    client: Any, accumulate: int, checkpoint: Any,
) -> tuple[Params, History]:
    """:func:`fit` on Dask data or a Dask cluster; the arguments are fit's, already checked."""
    accumulate = check_int("fit", "accumulate", accumulate, 1)
    if checkpoint is not None:
        raise ValueError(
            "fit: checkpoint= is not supported with Dask data or client= yet; pass checkpoint=None "
            "(or train from in-memory data in one process to checkpoint)."
        )
    if client is None and accumulate != 1:
        raise ValueError("fit: accumulate=k needs client= (a distributed.Client): it sets micro-batches per worker.")
    plan: Plan | None = None
    data: DaskData | None = None
    if is_dask(X, Y):
        data, counts = check_dask_data("fit", model, params, X, Y, loss, batch_size=batch_size)
        n, Xref = data.n, data.X
    else:
        plan = prepare(model, params, X, Y, loss, None, batch_size)
        n, Xref, counts = int(plan.X.shape[0]), plan.X, plan.counts_correct
    n_classes = data.n_classes if data is not None else (
        int(model(params, plan.X[:1, ...]).shape[1]) if counts and plan is not None else None)
    validation = _validation(model, params, Xref, validation_data, loss, plan, n_classes)
    steps_per_epoch = -(-n // batch_size)
    trainer = TrainStep(model, loss, optimizer, compile)
    shuffle_rng, dropout_rng = host_rng(seed).spawn(2)
    run = RunState(params, optimizer.init(trainable(params)), history={"loss": []})
    history = run.history
    state = run.opt_state
    if reduce_lr is not None and not hasattr(state, "lr_scale"):
        raise TypeError(
            f"fit: reduce_lr needs an optimizer whose state has an lr_scale field (pnn.optim's do); "
            f"{type(optimizer).__name__}'s state is a {type(state).__name__}."
        )
    best = (run.best_loss, params)
    bar = _progress_bar(progress, epochs * steps_per_epoch)
    with interrupts_between_steps() as interrupts:
        policy = Policy(on_nonfinite, history, interrupts, bar)
        runner: Epochs
        if client is not None:
            from ._dask_parallel import ClusterEpochs

            runner = ClusterEpochs(client, model, loss, optimizer, params, plan, data, batch_size, accumulate,
                                   shuffle_rng if shuffle else None, dropout_rng, policy, reduction)
        else:
            assert data is not None
            runner = StreamEpochs(trainer, data, batch_size, shuffle_rng if shuffle else None, dropout_rng,
                                  policy, reduction)
        epoch = 0
        try:
            while epoch < epochs and not run.stopped:
                params, state, total, correct = runner.run(params, state, epoch)
                run.params, run.opt_state = params, state
                lr = _epoch_lrs(optimizer, state, 1, steps_per_epoch)[0]
                _record(history, total / n if reduction != "sum" else total, correct, n, lr)
                epoch += 1
                run.epoch = epoch
                monitored = validate_epoch(history, None if validation is None else partial(
                    _validate, model, params, validation, loss, reduction), interrupts, bar)
                best, state = after_epoch(run, best, monitored, params, state, epoch, history, patience=patience,
                                          min_delta=min_delta, reduce_lr=reduce_lr, callbacks=callbacks)
                if epoch < epochs and not run.stopped:
                    interrupts.raise_if_pending()
        except StopTraining as stop:
            return stop.params, history
        except KeyboardInterrupt as e:
            if isinstance(e, FitInterrupted):
                raise
            raise FitInterrupted(run.params, {k: v[: run.epoch] for k, v in history.items()}) from e
        finally:
            runner.close()
            if bar is not None:
                bar.close()
    if patience is not None and run.since_best >= patience:
        return best[1], history
    return params, history


def _validate(model: Layer, params: Params, validation: Any, loss: Any, reduction: str) -> tuple[float, float | None]:
    """The validation loss and accuracy, streamed by block when the validation data are Dask arrays."""
    if isinstance(validation[0], DaskData):
        return evaluate_blocks(model, params, validation[0], loss, reduction, 1024, validation[1])
    return evaluate(model, params, *validation[0], loss=loss)
