"""The library's exception types.

Every bad-input error is a ``ValueError`` or ``TypeError`` (or one of the
subclasses here), and its message names the layer or argument, what was
expected, what was got, and how to fix it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendError",
    "CheckpointError",
    "ClusterError",
    "FitInterrupted",
    "GradientCheckError",
    "NonFiniteError",
    "PrecisionError",
    "StopTraining",
]


class BackendError(ValueError):
    """A backend is unknown, not installed, or the requested device does not exist.

    The message lists the known names, says what to ``pip install``, or lists the
    devices there are. Raised by :func:`~portable_nn.get_backend` and everything that
    takes a backend name.
    """


class PrecisionError(BackendError, TypeError):
    """A backend's library or device lacks a floating precision (bfloat16, float16, float64).

    Raised by ``be.dtype(name)`` (:meth:`Backend.dtype`), ``model.init(dtype=...)``
    and ``fit``/``predict``/``evaluate`` with ``precision=`` (before any work). The message names the backend and device, says why the
    precision is missing there, what to install where that helps, and the
    precisions the device has (:func:`~portable_nn.available_precisions`).

    A ``ValueError`` (a :class:`BackendError`) and, as ``be.dtype`` raised for
    a dtype a device lacks before, a ``TypeError``.

    >>> import portable_nn as pnn
    >>> try:
    ...     pnn.get_backend("array_api_strict").dtype("bfloat16")
    ... except pnn.PrecisionError as e:
    ...     print(isinstance(e, ValueError), isinstance(e, TypeError), "Precisions here: float32, float64" in str(e))
    True True True
    """


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted, foreign or mismatched.

    Raised by :func:`~portable_nn.load` for any bad file (never anything else on bad
    bytes; pickle files are refused, not unpickled) and by :func:`~portable_nn.fit`
    with ``resume=True`` against a checkpoint of another model, loss, optimizer, data
    or settings, naming what differs; the file is left as it was.
    """


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or inf loss or updated param (a ``FloatingPointError``).

    Raised by :func:`~portable_nn.fit` (with ``on_nonfinite="raise"``, the
    default), naming the epoch and the step that produced it.

    Attributes:
        params: the last params whose loss and gradients were finite (the
            params *before* the failing step), so no work is lost.
        epoch: 0-based epoch of the failing step.
        step: 0-based step within that epoch.
        history: the history up to the last completed epoch.
    """

    def __init__(self, message: str, *, params: Any, epoch: int, step: int, history: Any = None) -> None:
        super().__init__(message)
        self.params = params
        self.epoch = epoch
        self.step = step
        self.history = history


class ClusterError(RuntimeError):
    """``fit(..., client=...)`` lost every worker, or its client disconnected (or, with the all-reduce, the
    workers' params replicas drifted apart); a ``RuntimeError``.

    A single lost worker is not an error: its shards are re-read by the others
    and the training goes on from the last step all of them completed, with a
    ``RuntimeWarning``.

    Attributes:
        params: the params after the last completed step the client holds: every step with the hub
            exchange; with the all-reduce, the last chunk's end or checkpoint pause (the workers hold
            the steps after it).
        epoch: 0-based epoch of those params' next step.
        step: 0-based step, within that epoch, of those params' next step.
        history: the history up to the last completed epoch.
    """

    def __init__(self, message: str, *, params: Any, epoch: int, step: int, history: Any = None) -> None:
        super().__init__(message)
        self.params = params
        self.epoch = epoch
        self.step = step
        self.history = history


class GradientCheckError(AssertionError):
    """Backprop and finite differences disagree (an ``AssertionError``, raised by :func:`~portable_nn.gradcheck`).

    The message names the failing layer and param, and the largest difference.
    """


class FitInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`~portable_nn.fit` (a ``KeyboardInterrupt``).

    Attributes:
        params: the params after the last completed step, never a half-updated
            mix (on JAX, where fit runs whole chunks of epochs as one compiled
            loop, after the last completed chunk).
        history: the history of the completed epochs.
        opt_state: the optimizer state that goes with ``params`` (None where it is not known).

    With ``checkpoint=``, fit saves the run before raising this.
    """

    def __init__(self, params: Any, history: dict[str, list[float]], opt_state: Any = None) -> None:
        super().__init__("fit interrupted; the last completed step's params are on .params")
        self.params = params
        self.history = history
        self.opt_state = opt_state


class StopTraining(Exception):
    """Internal: on_nonfinite='stop' ends training with these params."""

    def __init__(self, params: Any) -> None:
        self.params = params
