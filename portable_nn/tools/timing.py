"""Timing a step function on a backend: warm-up, synchronized repeats, robust statistics.

:func:`time_steps` times one function (the benchmarks, outside the package, time several
round-robin with the same :class:`Timing`).

GPU libraries (and JAX, even on the CPU) queue work and return at once, so a
wall clock read right after a call measures only the dispatch. Each timed
block here ends by waiting for the device (:meth:`~portable_nn.Backend.synchronize`) and
for the arrays the last step returned (``block_until_ready`` where an array
has it: ``jax.effects_barrier`` alone does not wait for plain computations).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import tree_leaves
from ..backends import Backend
from ..layers.base import check_int

__all__ = ["Timing", "time_steps", "wait_for"]


@dataclass(frozen=True)
class Timing:
    """Seconds per step, one value per timed repeat.

    Attributes:
        per_step: seconds per step of each repeat (the repeat's wall time
            divided by ``steps``), in the order they ran.
        steps: steps in each repeat.
        warmup: untimed steps run before the first repeat.
        faults_per_step: minor page faults per step of each repeat (the
            process's ``ru_minflt`` delta over the repeat divided by ``steps``),
            or None when they were not counted.
    """

    per_step: tuple[float, ...]
    steps: int
    warmup: int
    faults_per_step: tuple[float, ...] | None = None

    @property
    def median_faults(self) -> float | None:
        """Median minor page faults per step over the repeats (None when not counted)."""
        return statistics.median(self.faults_per_step) if self.faults_per_step else None

    @property
    def median(self) -> float:
        """Median seconds per step over the repeats."""
        return statistics.median(self.per_step)

    @property
    def min(self) -> float:
        """Fastest repeat, seconds per step."""
        return min(self.per_step)

    @property
    def max(self) -> float:
        """Slowest repeat, seconds per step."""
        return max(self.per_step)

    @property
    def spread(self) -> float:
        """Interquartile range of the repeats relative to the median (0.05 = 5 %); 0 for one repeat."""
        if len(self.per_step) < 2 or self.median == 0:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.per_step, n=4, method="inclusive")
        return (q3 - q1) / self.median

    @property
    def steps_per_s(self) -> float:
        """Steps per second at the median time (``inf`` if the clock saw no time pass)."""
        return 1.0 / self.median if self.median > 0 else math.inf

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form: the raw per-repeat times and the summary statistics."""
        return {
            "per_step_s": list(self.per_step),
            "steps_per_repeat": self.steps,
            "repeats": len(self.per_step),
            "warmup_steps": self.warmup,
            "median_s": self.median,
            "min_s": self.min,
            "max_s": self.max,
            "spread_iqr_rel": self.spread,
            "steps_per_s": self.steps_per_s,
            **(
                {"faults_per_step": list(self.faults_per_step), "median_faults_per_step": self.median_faults}
                if self.faults_per_step is not None
                else {}
            ),
        }


def wait_for(be: Backend, result: Any = None) -> None:
    """Block until ``be``'s queued work, and the arrays in the pytree ``result``, are ready."""
    be.synchronize(*tree_leaves(result))


def time_steps(
    step: Callable[[], Any],
    be: Backend,
    *,
    steps: int = 100,
    repeats: int = 5,
    warmup: int = 10,
    reset: Callable[[], None] | None = None,
    on_repeat: Callable[[int], None] | None = None,
) -> Timing:
    """Time ``step()`` on backend ``be``.

    Runs ``reset()`` (if given) and ``warmup`` untimed steps, then ``repeats``
    blocks of ``steps`` steps. Before each block ``reset()`` runs untimed and
    the device is synchronized; each block's clock stops only after the device
    and the arrays returned by its last ``step()`` are ready.

    Args:
        step: zero-argument callable doing one unit of work; it may return a
            pytree of arrays, which is waited on at the end of each block.
        be: the backend the work runs on (for :meth:`~portable_nn.Backend.synchronize`).
        steps: steps per timed block (>= 1).
        repeats: timed blocks (>= 1); report the median over them.
        warmup: untimed steps first (>= 0), to compile kernels and fill caches.
        reset: restores the starting state (e.g. the initial params) so every
            block does the same work; called before warm-up and before each block.
        on_repeat: called after each block, outside the clock, with ``steps``
            (e.g. to advance a progress bar).

    Returns:
        A :class:`Timing` with one seconds-per-step value per block.
    """
    for name, value, lo in (("steps", steps, 1), ("repeats", repeats, 1), ("warmup", warmup, 0)):
        check_int("time_steps", name, value, lo)
    if not callable(step):
        raise TypeError(f"time_steps: step must be a zero-argument callable, got {type(step).__name__}.")
    if reset is not None:
        reset()
    result = None
    for _ in range(warmup):
        result = step()
    wait_for(be, result)
    per_step = []
    for _ in range(repeats):
        if reset is not None:
            reset()
        wait_for(be)
        start = time.perf_counter()
        for _ in range(steps):
            result = step()
        wait_for(be, result)
        per_step.append((time.perf_counter() - start) / steps)
        if on_repeat is not None:
            on_repeat(steps)
    return Timing(tuple(per_step), steps, warmup)
