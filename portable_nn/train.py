"""fit and predict: minibatches, seeded shuffling, validation, early stopping, progress."""

from __future__ import annotations

import math
import sys
from typing import Any

import array_api_compat
import numpy as np

from ._data import as_data, check_finite, params_backend
from ._interrupt import interrupts_between_steps
from ._layer import Array, Layer, Params
from ._loop import FitInterrupted, History, Loop, StopTraining, batches, run_epoch
from ._rng import host_rng
from ._scan import run_scanned
from ._tree import tree_map
from .step import TrainStep, n_correct

__all__ = ["fit", "predict", "evaluate", "FitInterrupted"]


def _positive_int(where: str, name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an int, got {type(value).__name__}.")
    if value < lo:
        raise ValueError(f"{where}: {name} must be >= {lo}, got {value}.")
    return int(value)


def evaluate(
    model: Layer, params: Params, X: Any, Y: Any, *, loss: Any, batch_size: int = 1024
) -> tuple[float, float | None]:
    """Mean loss (weighted by batch size) and accuracy (integer labels only) over a data set."""
    where = "evaluate"
    xp, device, dtype = params_backend(params, where)
    X = as_data(where, "X", X, xp, device, dtype, labels_ok=False)
    Y = as_data(where, "Y", Y, xp, device, dtype, labels_ok=True)
    total, correct, n, has_acc = 0.0, 0, X.shape[0], False
    if Y.shape[0] != n:
        raise ValueError(f"evaluate: X has {n} rows but Y has {Y.shape[0]}; they must have the same length.")
    if n == 0:
        raise ValueError("evaluate: X is empty (0 rows).")
    for idx in batches(n, _positive_int(where, "batch_size", batch_size, 1), None):
        Yp = model.apply(params, X[idx, ...])[0]
        value = float(loss(Yp, Y[idx, ...])[0])
        total += value * (idx.stop - idx.start)
        c = n_correct(xp, Yp, Y[idx, ...])
        correct = correct + (0 if c is None else int(c))
        has_acc = c is not None
    return total / n, (correct / n if has_acc else None)


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
        loss: ``f(Y_pred, Y) -> (value, dY)``, e.g. ``pnn.losses.softmax_cross_entropy``.
        optimizer: an object with ``init(params)`` and ``step(params, grads, state)``.
        epochs: passes over the data (>= 0).
        batch_size: rows per step (>= 1); the last batch may be smaller.
        seed: seeds shuffling and dropout (host RNG: same on every backend).
        shuffle: reshuffle the rows every epoch.
        validation_data: ``(X_val, Y_val)`` evaluated after each epoch.
        patience: stop after this many epochs without improvement of the
            validation loss (training loss without validation data) by more
            than ``min_delta``, and return the best params.
        progress: tqdm progress bar; ``None`` shows it only when stderr is a terminal.
        on_nonfinite: when a loss or gradient is NaN/inf: ``"raise"`` a
            :class:`NonFiniteError` carrying the last finite params,
            ``"stop"`` and return them with a warning, or ``"ignore"``.
        compile: see :func:`compile_step`: ``None`` jits the forward/backward
            and the update with ``jax.jit`` on JAX (models without dropout);
            ``True`` also uses ``torch.compile`` on torch; ``False`` always
            runs the portable code.

    Returns:
        ``(params, history)``; history maps ``"loss"``, ``"accuracy"`` (integer
        labels only), ``"val_loss"``, ``"val_accuracy"`` to one float per epoch.

    Raises:
        TypeError, ValueError: bad arguments or data (named in the message).
        NonFiniteError: see ``on_nonfinite``.
        FitInterrupted: on Ctrl-C, carrying the last completed step's params.
    """
    where = "fit"
    epochs = _positive_int(where, "epochs", epochs, 0)
    batch_size = _positive_int(where, "batch_size", batch_size, 1)
    if on_nonfinite not in ("raise", "stop", "ignore"):
        raise ValueError(f"fit: on_nonfinite must be 'raise', 'stop' or 'ignore', got {on_nonfinite!r}.")
    if patience is not None:
        patience = _positive_int(where, "patience", patience, 1)
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
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise TypeError("fit: validation_data must be a pair (X_val, Y_val).")
        Xv = as_data(where, "X_val", validation_data[0], xp, device, dtype, labels_ok=False)
        Yv = as_data(where, "Y_val", validation_data[1], xp, device, dtype, labels_ok=True)
        if Xv.shape[0] != Yv.shape[0]:
            raise ValueError(f"fit: X_val has {Xv.shape[0]} rows but Y_val has {Yv.shape[0]}.")
        check_finite(where, "X_val", Xv, xp)

    trainer = TrainStep(model, loss, optimizer, compile)
    shuffle_rng, dropout_rng = host_rng(seed).spawn(2)
    state = optimizer.init(params)
    history: History = {"loss": []}
    # Mutable arrays, portable step, an optimizer with update(): work on copies fit owns, updated in place
    owned = (epochs > 0 and hasattr(optimizer, "update") and trainer.compiler(X) is None
             and not array_api_compat.is_jax_array(X))
    if owned:
        params = _copy(xp, params)
    best = (math.inf, params)
    since_best = 0
    steps_per_epoch = -(-n // batch_size)
    # JAX, no dropout: run whole chunks of epochs as one compiled loop
    scanned = n >= batch_size and trainer.uses_jit(X)
    labels = bool(xp.isdtype(Y.dtype, "integral"))
    chunk = epochs if validation_data is None and patience is None else 1
    bar = _progress_bar(progress, epochs * steps_per_epoch)
    epoch = 0
    with interrupts_between_steps() as interrupted:
        loop = Loop(trainer, X, Y, batch_size, dropout_rng, on_nonfinite, history, bar, owned, interrupted)
        try:
            while epoch < epochs:
                k = min(chunk, epochs - epoch) if scanned else 1
                orders = [shuffle_rng.permutation(n) if shuffle else None for _ in range(k)]
                start = (params, state)
                if scanned:
                    full = np.stack([np.arange(n) if o is None else o for o in orders])
                    params, state, totals, checks, correct = run_scanned(
                        trainer, params, state, X, Y, full, batch_size
                    )
                    if on_nonfinite == "ignore" or np.isfinite(checks).all():
                        for e in range(k):
                            _record(history, float(totals[e]) / n, correct[e].sum() if labels else None, n)
                        if bar is not None:
                            bar.update(k * steps_per_epoch)
                        epoch += k
                        k = 0
                    else:  # replay the chunk step by step: it stops at the bad step with the params before it
                        params, state = start
                for e in range(k):
                    params, state, total, c = run_epoch(loop, params, state, orders[e], epoch)
                    _record(history, total / n, c, n)
                    epoch += 1
                if interrupted:  # Ctrl-C during a compiled chunk
                    raise KeyboardInterrupt
                monitored = history["loss"][-1]
                if validation_data is not None:
                    vl, va = evaluate(model, params, Xv, Yv, loss=loss)
                    history.setdefault("val_loss", []).append(vl)
                    if va is not None:
                        history.setdefault("val_accuracy", []).append(va)
                    monitored = vl
                if bar is not None:
                    bar.set_postfix({key: f"{v[-1]:.4g}" for key, v in history.items()}, refresh=False)
                if patience is not None:
                    if monitored < best[0] - min_delta:  # a copy when the params are updated in place
                        best = (monitored, _copy(xp, params) if owned else params)
                        since_best = 0
                    else:
                        since_best += 1
                        if since_best >= patience:
                            return best[1], history
        except StopTraining as stop:
            return stop.params, history
        except FitInterrupted:
            raise
        except KeyboardInterrupt as e:
            raise FitInterrupted(params, history) from e
        finally:
            if bar is not None:
                bar.close()
    return params, history


def _copy(xp: Any, params: Params) -> Params:
    """New arrays with the values of ``params`` (fit's own, to update in place)."""
    return tree_map(lambda a: xp.asarray(a, copy=True), params)


def _record(history: History, mean_loss: float, n_correct: Any, n: int) -> None:
    """Append one epoch's training loss (and accuracy, for integer labels) to the history."""
    history["loss"].append(mean_loss)
    if n_correct is not None:
        history.setdefault("accuracy", []).append(int(n_correct) / n)


def predict(model: Layer, params: Params, X: Any, *, batch_size: int = 1024) -> Array:
    """Run ``model`` in inference mode over ``X`` in batches.

    Args:
        X: ``(n, ...)`` float inputs; host data is copied to the params' device.
        batch_size: rows per forward pass (>= 1).

    Returns:
        ``Y`` of shape ``(n, ...)``, on the params' backend and device.
    """
    where = "predict"
    batch_size = _positive_int(where, "batch_size", batch_size, 1)
    xp, device, dtype = params_backend(params, where)
    X = as_data(where, "X", X, xp, device, dtype, labels_ok=False)
    outs = [model.apply(params, X[idx, ...])[0] for idx in batches(X.shape[0], batch_size, None)]
    if not outs:
        raise ValueError("predict: X is empty (0 rows).")
    return outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)


def _progress_bar(progress: bool | None, total: int) -> Any:
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="fit", leave=True, mininterval=0.25)
