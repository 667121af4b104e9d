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
    """A backend is unknown, not installed, or the requested device does not exist."""


class PrecisionError(BackendError, TypeError):
    """A backend's library or device lacks a floating precision (bfloat16, float16, float64).

    A ``ValueError`` (a :class:`BackendError`) and, as ``be.dtype`` raised for
    a dtype a device lacks before, a ``TypeError``.
    """


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted, foreign or mismatched."""


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or inf loss or gradient.

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
    workers' params replicas drifted apart).

    Attributes:
        params: the params after the last completed step the client holds: every step with the hub
            exchange; with the all-reduce, the last chunk's end or checkpoint pause (the workers hold
            the steps after it).
        epoch, step: 0-based epoch and step of those params' next step.
        history: the history up to the last completed epoch.
    """

    def __init__(self, message: str, *, params: Any, epoch: int, step: int, history: Any = None) -> None:
        super().__init__(message)
        self.params = params
        self.epoch = epoch
        self.step = step
        self.history = history


class GradientCheckError(AssertionError):
    """Backprop and finite differences disagree (raised by :func:`gradcheck`)."""


class FitInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit`. ``params`` are those after the last completed step.

    (On JAX, where fit runs whole chunks of epochs as one compiled loop, the
    last completed chunk.)
    """

    def __init__(self, params: Any, history: dict[str, list[float]]) -> None:
        super().__init__("fit interrupted; the last completed step's params are on .params")
        self.params = params
        self.history = history


class StopTraining(Exception):
    """Internal: on_nonfinite='stop' ends training with these params."""

    def __init__(self, params: Any) -> None:
        self.params = params
