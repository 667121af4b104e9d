"""Training: fit, predict, evaluate and one compiled or portable step.

``fit`` validates everything at entry, then runs chunks of epochs with one
runner per mode (the portable code step by step, or whole epochs compiled by
``jax.lax.scan`` on JAX), then does the per-epoch bookkeeping.
"""

from __future__ import annotations

from .._errors import FitInterrupted
from ._evaluate import evaluate, predict
from ._fit import fit
from ._step import TrainStep, compile_step

__all__ = ["FitInterrupted", "TrainStep", "compile_step", "evaluate", "fit", "predict"]
