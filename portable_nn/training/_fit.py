"""fit: its arguments checked into one settings object, then a data source, then the one epoch driver.

The steps run where the data and the arguments say (see ``_driver``): the
portable step loop, JAX's compiled epochs, Dask blocks streamed in the
epoch's order, or a Dask cluster (``client=``); everything else is the
driver's, the same on every path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from typing import Any

from ..backends import namespace
from ..layers.base import Layer, Params
from ..losses import reduction_of, unchecked
from ..schedules import ReduceOnPlateau
from ._checkpoint import fingerprint
from ._dask_data import DaskData, DaskSource, as_dask_pair, check_dask_data, evaluate_blocks, is_dask
from ._data import prepare, prepare_validation
from ._driver import Validation, train
from ._epoch import History
from ._evaluate import evaluate
from ._precision import check_precision, with_loss_scale
from ._settings import Callback, Settings, check_settings
from ._source import MemorySource, Source
from ._step import StepSpec, TrainStep

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
    shuffle: bool | str = True,
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
    sample_weight: Any = None,
    precision: str | None = None,
) -> tuple[Params, History]:
    """Train ``model`` from ``params`` with minibatch ``optimizer`` steps.

    Args:
        model: a Layer (usually :class:`Sequential`).
        params: its params; they fix the backend, device and dtype. For a model
            with a model state (BatchNorm) its ``Variables(params, state)``: the
            optimizer trains ``params``, the state is updated by the forward
            passes, and the Variables come back.
        X: inputs ``(n, ...)``: floats, or integer indices ``(n, seq)`` for a
            model whose first layer takes them (an ``Embedding``). Host data
            (NumPy, lists) is copied to the params' device and floats are cast
            to their dtype; arrays of another library or device raise. A Dask
            array is streamed block by block (about two blocks in memory with
            ``shuffle="blocks"`` or ``False``; see the guide's Dask page, docs/guide/dask.md).
        Y: targets ``(n, ...)``: floats, or integer class labels ``(n,)`` (``(n, seq)`` for a sequence model).
        loss: ``f(Y_pred, Y) -> (value, dY)``, e.g. ``pnn.losses.softmax_cross_entropy``;
            its ``reduction`` attribute (``"mean"``, the default, or ``"sum"``)
            says how batch values add up to the epoch's.
        optimizer: an object with ``init(params)`` and ``step(params, grads, state)``.
        epochs: passes over the data (>= 0).
        batch_size: rows per step (>= 1); the last batch may be smaller.
        seed: seeds shuffling and dropout (host RNG: same on every backend).
        shuffle: ``True``: a new permutation of all rows every epoch, the same
            batches wherever the data live (memory, Dask, a cluster);
            ``False``: the stored order; ``"blocks"`` (Dask data): blocks in a
            new order and rows shuffled within each block, so each block is
            read once per epoch (for data far larger than memory).
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
            ``lax.scan`` (in-memory data, models without host randomness; a
            chunk takes about a second); ``True`` also uses ``torch.compile`` on
            torch; ``False`` always runs the portable code.
        checkpoint: a file to save the run to (atomically, safetensors, never
            pickle): params, optimizer state, epoch and step, both RNG states,
            the history, the early-stopping bookkeeping, and a fingerprint of
            the model, loss, optimizer, settings and data. Also written on Ctrl-C
            before :class:`FitInterrupted` is raised. Its folder must exist and
            be writable: that is checked before any step.
        checkpoint_every: save every this many steps; ``None`` (default): at the
            end of every epoch. On JAX's compiled path saves happen between
            compiled chunks (the first chunk boundary after each multiple).
        resume: continue from ``checkpoint`` when the file exists (start afresh
            when it does not). The result equals an uninterrupted run's bit for
            bit on the portable path. A file written for another model, loss,
            optimizer, data, validation data or settings (``batch_size``,
            ``shuffle``, ``seed``, ``patience``, ``min_delta``, ``reduce_lr``,
            ``precision``) raises :class:`CheckpointError` naming what differs
            (each setting with both values), and is left as it is. ``epochs``, ``progress``, ``on_nonfinite``, ``compile``,
            ``checkpoint_every``, ``callbacks``, ``client`` and ``accumulate``
            may change on resume.
        callbacks: objects with ``on_epoch_end(epoch, history, params)``, called
            after each epoch's validation; one that returns True stops training
            (fit returns the current params).
        reduce_lr: a :class:`~portable_nn.schedules.ReduceOnPlateau`: scale the
            learning rate down (the optimizer state's ``lr_scale``) when the
            monitored loss (as for ``patience``) stops improving.
        client: a ``distributed.Client``, or a :class:`~portable_nn.DataParallel`
            around one: train data-parallel on its workers, each holding a row
            shard and a params replica; the gradients are summed among the
            workers by an all-reduce (``DataParallel(client, exchange="hub")``:
            through the client). The params equal one process's to rounding
            (see the guide's Dask page, docs/guide/dask.md).
        accumulate: with ``client``, each worker runs its part of every batch as
            this many micro-batches (same result, less memory).
        sample_weight: ``(n,)`` weights >= 0 (in-memory data): a ``"mean"``
            loss of a batch is then ``sum(w_i l_i) / sum(w_i)``, and the
            epoch's loss the weighted mean over all rows. The loss is called
            with ``weights=``: the built-in losses take it (see
            :mod:`portable_nn.losses`); a loss of your own must too.
        precision: ``None`` (compute in the params' dtype), ``"bfloat16"`` or
            ``"float16"``: mixed precision. The params and the optimizer state
            stay float32 (the master weights); each step casts the params and
            the batch to this dtype, runs forward and backward there (the
            statistics and softmaxes a layer lists in ``float32_ops`` stay
            float32), computes the loss in float32 and casts the grads back. For
            ``"float16"`` the optimizer is wrapped in
            :class:`~portable_nn.optim.DynamicLossScale` unless it is one: a
            step whose grads overflow is skipped (params and optimizer state
            unchanged), not an error; the history then also holds
            ``"loss_scale"`` (at each epoch's end) and ``"skipped_steps"``.
            Validation runs in the same precision. A backend or device without
            it raises before any step (see :func:`~portable_nn.available_precisions`).

    Returns:
        ``(params, history)``; history maps ``"loss"``, ``"accuracy"`` (integer
        labels only), ``"val_loss"``, ``"val_accuracy"``, ``"lr"`` (the
        learning rate of the epoch's last step, where the optimizer has a
        ``learning_rate``) and, with a loss-scaled optimizer,
        ``"loss_scale"`` and ``"skipped_steps"`` to one float per epoch.
        Losses are over the whole epoch as the loss reduces: the mean over
        rows for a ``"mean"`` loss, the sum for a ``"sum"`` loss.

    Every check (arguments, data, labels against the model's output width,
    integer ids against what the model takes, validation data, the
    checkpoint's folder) runs before the first step; Dask data are checked
    block by block as they are read.
    Ctrl-C stops between steps (between compiled chunks on JAX) and raises
    :class:`FitInterrupted`; during validation it stops at once. A Ctrl-C that
    arrives while the last step (or chunk) runs, with nothing left to do after
    it, lets fit return the finished run, with a warning.

    Raises:
        TypeError, ValueError: bad arguments or data (named in the message).
        CheckpointError: ``resume`` against a checkpoint of another run.
        NonFiniteError: see ``on_nonfinite``.
        FitInterrupted: on Ctrl-C, carrying the last completed step's params and
            the history of the completed epochs.
        ClusterError: ``client=`` lost every worker or its scheduler (or the
            workers' replicas drifted apart).

    >>> import numpy as np, portable_nn as pnn
    >>> X = np.random.default_rng(0).standard_normal((64, 3))
    >>> model = pnn.Sequential(pnn.Linear(3, 8), pnn.ReLU(), pnn.Linear(8, 1))
    >>> params, history = pnn.fit(model, model.init(seed=0, backend="numpy"), X, X @ [[1.0], [2.0], [3.0]],
    ...                           loss=pnn.losses.mean_squared_error, optimizer=pnn.optim.Adam(1e-2),
    ...                           epochs=20, batch_size=16, progress=False)
    >>> len(history["loss"]), history["loss"][-1] < history["loss"][0] / 10
    (20, True)
    """
    s = check_settings(
        epochs=epochs, batch_size=batch_size, seed=seed, shuffle=shuffle, patience=patience, min_delta=min_delta,
        progress=progress, on_nonfinite=on_nonfinite, compile=compile, checkpoint=checkpoint,
        checkpoint_every=checkpoint_every, resume=resume, callbacks=callbacks, reduce_lr=reduce_lr,
        accumulate=accumulate, precision=check_precision("fit", precision, params),
    )
    if client is None and s.accumulate != 1:
        raise ValueError("fit: accumulate=k needs client= (a distributed.Client): it sets micro-batches per worker.")
    reduction = reduction_of(loss)
    optimizer = with_loss_scale(optimizer, s.precision)
    data, validation, validate = _sources(model, params, X, Y, loss, validation_data, s, sample_weight)
    spec = StepSpec(model, loss, optimizer, precision=s.precision)
    if client is None and TrainStep(spec, s.compile, where="fit").compiler(data.like) is None:  # the data were checked above
        spec = StepSpec(model, unchecked(loss, namespace(data.like)), optimizer, precision=s.precision)
    prints = None
    if s.checkpoint is not None:
        prints = fingerprint(model, loss, optimizer, _arrays(data), validation, s.resume_key(), params)
    out = train(spec, params, data, s, reduction=reduction, validation=validate, client=client, prints=prints)
    return out.params, out.history


def _sources(
    model: Layer, params: Params, X: Any, Y: Any, loss: Any, validation_data: Any, s: Settings, sample_weight: Any,
) -> tuple[Source, Any, Validation | None]:
    """The checked training data as a source, the checked validation data, and their evaluator."""
    if is_dask(X, Y):
        if sample_weight is not None:
            raise ValueError("fit: sample_weight with Dask data is not supported; pass in-memory data.")
        dd, counts = check_dask_data("fit", model, params, X, Y, loss, batch_size=s.batch_size)
        data: Source = DaskSource(dd, counts)
    else:
        data = prepare(model, params, X, Y, loss, s.batch_size, sample_weight)
    if validation_data is None:
        return data, None, None
    if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
        raise TypeError("fit: validation_data must be a pair (X_val, Y_val).")
    if isinstance(data, MemorySource) and not is_dask(*validation_data):
        Xv, Yv = prepare_validation(model, params, validation_data, data)
        return data, (Xv, Yv), lambda p: evaluate(model, p, Xv, Yv, loss=loss, precision=s.precision)
    vd = _dask_validation(model, params, validation_data, loss, data)
    return data, (vd.X, vd.Y), partial(_evaluate_blocks, model, vd, loss, reduction_of(loss), s.precision)


def _dask_validation(model: Layer, params: Params, validation_data: Any, loss: Any, data: Source) -> DaskData:
    """Validation data streamed by block (Dask, or host data next to Dask training data), checked."""
    import dask.array as da
    import numpy as np

    Xv, Yv = validation_data
    if not is_dask(Xv, Yv):
        rows = max(getattr(data, "block_sizes", [1024]))
        Xv = da.from_array(np.asarray(Xv), chunks=(rows,) + tuple(-1 for _ in np.shape(Xv)[1:]))
    Xv, Yv = as_dask_pair("fit", ("X_val", "Y_val"), Xv, Yv)
    row_shape = tuple(data.like.shape[1:])
    if tuple(Xv.shape[1:]) != row_shape:
        raise ValueError(
            f"fit: X_val has shape {tuple(Xv.shape)} but X has rows of shape {row_shape}; each row must look "
            "like a row of X."
        )
    n_classes = getattr(getattr(data, "data", None), "n_classes", None)
    if n_classes is None and data.counts_correct:
        n_classes = int(model(params, data.like[:1, ...]).shape[-1])
    vd, counts = check_dask_data("fit", model, params, Xv, Yv, loss, ("X_val", "Y_val"), n_classes)
    vd.counts = counts
    return vd


def _evaluate_blocks(
    model: Layer, vd: DaskData, loss: Any, reduction: str, precision: str | None, params: Params
) -> tuple[float, float | None]:
    return evaluate_blocks(model, params, vd, loss, reduction, 1024, vd.counts, precision)


def _arrays(data: Source) -> tuple[Any, Any, Any]:
    """The training data's arrays, for the checkpoint's fingerprint: ``(X, Y, W)``."""
    if isinstance(data, MemorySource):
        return data.X, data.Y, data.W
    assert isinstance(data, DaskSource)
    return data.data.X, data.data.Y, None
