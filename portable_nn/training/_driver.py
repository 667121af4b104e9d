"""The epoch driver: the one training loop under ``fit``, Dask data, ``client=`` and the estimators.

:func:`train` owns, once, everything that is the same wherever the steps run:
the run state and the history, the progress bar, the row order of each epoch,
validation, early stopping (``patience``), ``reduce_lr`` and callbacks,
checkpoint cadence and resume, Ctrl-C (:class:`FitInterrupted`), the
non-finite policy and returning the best params. What differs is behind one
small runner interface (``chunk(remaining)``, ``run(params, state, orders,
epoch, start, total, correct)``, ``close()``), so a runner only produces
epochs of steps:

- :class:`~._epoch.StepRunner`: the portable step loop, over any data source
  (in memory, or Dask blocks streamed in the epoch's order);
- :class:`~._scan.ScanRunner`: JAX's compiled ``lax.scan`` over whole epochs;
- ``_allreduce.AllReduceRunner`` and ``_cluster.ClusterRunner``: the steps on a Dask cluster's workers,
  gradients summed among them or through the client (``_parallel.DataParallel``).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import FitInterrupted, StopTraining
from .._rng import host_rng
from ..layers.base import Params, trainable
from ._checkpoint import Checkpointer, RunState
from ._epoch import History, Loop, StepRunner, epoch_lrs, record, replace_state
from ._interrupt import Interrupts, interrupts_between_steps
from ._precision import loss_scale_of
from ._scan import ScanRunner
from ._settings import Settings
from ._source import MemorySource, Source
from ._step import StepSpec, TrainStep

__all__ = ["Outcome", "train"]

Validation = Callable[[Params], tuple[float, float | None]]
"""``validate(params) -> (val_loss, val_accuracy or None)``."""


@dataclass
class Outcome:
    """What a training run ends with: the params to return, the optimizer state after the last step, the history."""

    params: Params
    opt_state: Any
    history: History


def train(
    spec: StepSpec, params: Params, data: Source, s: Settings, *, reduction: str,
    validation: Validation | None = None, client: Any = None, opt_state: Any = None,
    orders: Callable[[], np.ndarray | None] | None = None, prints: dict[str, str] | None = None,
    batch_weight: str = "samples",
) -> Outcome:
    """Train ``spec`` from ``params`` on ``data`` as ``s`` says; see :func:`~portable_nn.fit` for the rules.

    Args:
        reduction: the loss's, ``"mean"`` or ``"sum"``.
        validation: evaluates params after each epoch (None: the training loss is monitored).
        client: a ``distributed.Client`` or a ``DataParallel``: the steps run on its workers.
        opt_state: the optimizer state to continue from (None: ``optimizer.init``).
        orders: draws each epoch's row order (None: from ``s.seed`` and ``s.shuffle``).
        prints: the run's checkpoint fingerprint (needed with ``s.checkpoint``).
        batch_weight: ``"samples"`` or ``"rows"``: what each batch's value of a ``"mean"`` loss counts
            for in the epoch's loss (see ``_epoch.Loop``; they differ only with sample weights).
    """
    n, bs = data.n, s.batch_size
    steps_per_epoch = -(-n // bs)
    trainer = TrainStep(spec, s.compile, where="fit")
    shuffle_rng, dropout_rng = host_rng(s.seed).spawn(2)
    draw = orders or _default_orders(data, s, shuffle_rng)
    if opt_state is None:
        opt_state = spec.optimizer.init(trainable(params))
    run = RunState(params, opt_state, history={"loss": []})
    ckpt = None
    if s.checkpoint is not None:
        assert prints is not None
        ckpt = Checkpointer(s.checkpoint, s.checkpoint_every, prints, params)
        loaded = ckpt.load() if s.resume else None
        if loaded is not None:
            run = loaded
            shuffle_rng.bit_generator.state = run.shuffle_state
            dropout_rng.bit_generator.state = run.dropout_state
    params, state, history = run.params, run.opt_state, run.history
    if s.reduce_lr is not None and not hasattr(state, "lr_scale"):
        raise TypeError(
            f"fit: reduce_lr needs an optimizer whose state has an lr_scale field (pnn.optim's do); "
            f"{type(spec.optimizer).__name__}'s state is a {type(state).__name__}."
        )
    best = (run.best_loss, params if run.best_params is None else run.best_params)
    bar = _progress_bar(s.progress, s.epochs * steps_per_epoch, run.epoch * steps_per_epoch + run.step)

    def on_step(p: Params, st: Any, epoch: int, step: int, total: Any, correct: Any) -> None:
        run.params, run.opt_state, run.epoch, run.step, run.total, run.correct = p, st, epoch, step, total, correct
        run.steps_done = epoch * steps_per_epoch + step
        run.dropout_state = dropout_rng.bit_generator.state  # (about 1 us: only when checkpointing)
        if ckpt is not None and ckpt.due(run.steps_done):
            ckpt.save(run)

    scaled = loss_scale_of(state) is not None
    with interrupts_between_steps() as interrupts:
        loop = Loop(trainer, data, bs, dropout_rng, s.on_nonfinite, history, bar, reduction, interrupts,
                    None if ckpt is None else on_step, compiled=trainer.compiler(data.like) is not None,
                    scaled=scaled, batch_weight=batch_weight)
        runner = _runner(loop, s, client, params, one_epoch=validation is not None or s.patience is not None
                         or s.reduce_lr is not None or bool(s.callbacks) or scaled)
        epoch = run.epoch
        try:
            while epoch < s.epochs and not run.stopped:
                run.shuffle_state = shuffle_rng.bit_generator.state  # this epoch's order is drawn from it
                epoch_orders = [draw() for _ in range(1 if run.step else runner.chunk(s.epochs - epoch))]
                params, state, stats = runner.run(params, state, epoch_orders, epoch, run.step, run.total, run.correct)
                before = run.steps_done
                for (epoch_loss, correct), lr in zip(stats, epoch_lrs(spec.optimizer, state, len(stats),
                                                                       steps_per_epoch), strict=True):
                    record(history, epoch_loss, correct, data.n_labels, lr)
                if scaled:  # one epoch per run: the loss scale at its end and the steps it skipped
                    history.setdefault("loss_scale", []).append(float(state.scale))
                    history.setdefault("skipped_steps", []).append(float(int(state.skipped) - run.skipped_before))
                epoch += len(stats)
                if (run.epoch, run.step) != (epoch - 1, steps_per_epoch):  # no on_step ran (no checkpoint, or a
                    # compiled chunk): the last epoch's steps are done, its validation not yet (a resume point)
                    run.params, run.opt_state, run.epoch, run.step = params, state, epoch - 1, steps_per_epoch
                    run.total = stats[-1][0] * (1 if reduction == "sum" else loop.epoch_weight())
                    run.correct, run.steps_done = stats[-1][1], epoch * steps_per_epoch
                    run.dropout_state = dropout_rng.bit_generator.state
                monitored = _validate_epoch(history, validation, params, interrupts, bar)
                best, state = _after_epoch(run, best, monitored, params, state, epoch, history, s)
                run.epoch, run.step, run.total, run.correct = epoch, 0, 0.0, None
                if scaled:  # counted from here on; not before: a save during validation resumes this epoch
                    run.skipped_before = int(state.skipped)
                run.best_loss, run.best_params = best[0], None if s.patience is None else best[1]
                run.shuffle_state = shuffle_rng.bit_generator.state
                if ckpt is not None and (ckpt.every is None or run.steps_done // ckpt.every > before // ckpt.every
                                         or run.stopped or epoch == s.epochs):
                    ckpt.save(run)
                if epoch < s.epochs and not run.stopped:
                    interrupts.raise_if_pending()
        except StopTraining as stop:
            return Outcome(stop.params, state, history)
        except KeyboardInterrupt as e:
            if ckpt is not None:
                ckpt.save(run)
            if isinstance(e, FitInterrupted):
                raise
            raise FitInterrupted(run.params, {k: v[: run.epoch] for k, v in history.items()}, run.opt_state) from e
        finally:
            runner.close()
            if bar is not None:
                bar.close()
    if interrupts.pending:
        warnings.warn("fit: Ctrl-C arrived while the last step ran; the run finished.", RuntimeWarning, stacklevel=3)
    if s.patience is not None and run.since_best >= s.patience:
        return Outcome(best[1], state, history)
    return Outcome(params, state, history)


def _default_orders(data: Source, s: Settings, rng: np.random.Generator) -> Callable[[], np.ndarray | None]:
    """Each epoch's row order: a permutation of all rows (``shuffle=True``), the stored order (``False``), or
    blocks in a new order with the rows shuffled within each block (``"blocks"``: Dask data)."""
    if s.shuffle == "blocks":
        sizes = getattr(data, "block_sizes", None)
        if sizes is None:
            raise ValueError("fit: shuffle='blocks' needs Dask data (it shuffles whole blocks, then rows within "
                             "each); in-memory data has no blocks: use shuffle=True.")
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

        def blocks() -> np.ndarray:
            return np.concatenate([offsets[b] + rng.permutation(sizes[b]) for b in rng.permutation(len(sizes))])

        return blocks
    if s.shuffle:
        return lambda: rng.permutation(data.n)
    return lambda: None


def _runner(loop: Loop, s: Settings, client: Any, params: Params, one_epoch: bool) -> Any:
    """The runner for this run: on the cluster, JAX's compiled epochs, or the portable steps."""
    if client is not None:
        from ._parallel import cluster_runner

        return cluster_runner(client, loop, s, params, one_epoch)
    steps = StepRunner(loop)
    data = loop.source
    if isinstance(data, MemorySource) and data.n >= s.batch_size and loop.trainer.uses_jit(data.like) \
            and _hashable(loop.trainer.spec):
        return ScanRunner(steps, one_epoch=one_epoch)
    return steps


def _hashable(spec: StepSpec) -> bool:
    """The spec can be a static argument of a compiled function (a user's loss may be unhashable)."""
    try:
        hash((spec, spec.key()))
    except TypeError:
        return False
    return True


def _validate_epoch(history: History, validate: Validation | None, params: Params, interrupts: Interrupts,
                    bar: Any) -> float:
    """Validate (Ctrl-C stops it at once), record it, show progress; return the monitored loss (the
    validation loss, or the training loss without validation)."""
    monitored = history["loss"][-1]
    if validate is not None:
        with interrupts.at_once():
            vl, va = validate(params)
        history.setdefault("val_loss", []).append(vl)
        if va is not None:
            history.setdefault("val_accuracy", []).append(va)
        monitored = vl
    if bar is not None:
        bar.set_postfix({key: f"{v[-1]:.4g}" for key, v in history.items()}, refresh=False)
    return monitored


def _after_epoch(
    run: RunState, best: tuple[float, Params], monitored: float, params: Params, state: Any, epoch: int,
    history: History, s: Settings,
) -> tuple[tuple[float, Params], Any]:
    """Early stopping, ``reduce_lr`` and the callbacks after ``epoch`` epochs: the best ``(loss, params)``
    and the optimizer state (its ``lr_scale`` lowered when ``reduce_lr`` says so); sets ``run.stopped``."""
    if s.patience is not None:
        if monitored < best[0] - s.min_delta:
            best, run.since_best = (monitored, params), 0  # params are never updated in place
        else:
            run.since_best += 1
            run.stopped = run.since_best >= s.patience
    if s.reduce_lr is not None:
        run.plateau_best, run.plateau_wait, scale = s.reduce_lr.update(
            run.plateau_best, run.plateau_wait, float(state.lr_scale), monitored
        )
        if scale != float(state.lr_scale):
            state = run.opt_state = replace_state(state, lr_scale=scale)
    run.stopped = run.stopped or any(bool(cb.on_epoch_end(epoch - 1, history, params)) for cb in s.callbacks)
    return best, state


def _progress_bar(progress: bool | None, total: int, done: int = 0) -> Any:
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, unit="step", desc="fit", leave=True, mininterval=0.25)
