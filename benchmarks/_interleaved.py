"""Timing several candidates round-robin, so slow drifts of a shared, noisy machine hit every one alike.

:func:`time_interleaved` runs repeat 1 of each candidate, then repeat 2 of each... and returns one
:class:`portable_nn.tools.timing.Timing` per candidate, with the minor page faults of each repeat.
Each timed block ends by waiting for the device and the arrays the last call returned, as
:func:`portable_nn.tools.timing.time_steps` does.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from portable_nn import Backend, tree_leaves
from portable_nn.layers.base import check_int
from portable_nn.tools.timing import Timing, wait_for

__all__ = ["Candidate", "minor_faults", "time_interleaved"]


def minor_faults() -> int | None:
    """This process's minor page faults so far (``getrusage`` ``ru_minflt``); None where unavailable."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


@dataclass(frozen=True)
class Candidate:
    """One contender of :func:`time_interleaved`.

    Attributes:
        name: unique label.
        step: zero-argument callable doing ``units`` units of work (e.g. one
            training step, or a whole compiled 500-step run with ``units=500``);
            it may return a pytree of arrays, waited on at the end of a block.
        backend: the backend to synchronize; None waits only on the returned
            arrays that have ``block_until_ready`` (JAX).
        reset: restores the starting state, untimed, before warm-up and before
            every block.
        units: work units one ``step()`` call does; times are per unit.
        warmup: untimed warm-up callable; None runs ``step`` instead.
    """

    name: str
    step: Callable[[], Any]
    backend: Backend | None = None
    reset: Callable[[], None] | None = None
    units: int = 1
    warmup: Callable[[], Any] | None = None


def _sync(be: Backend | None, result: Any) -> None:
    if be is not None:
        wait_for(be, result)
        return
    for leaf in tree_leaves(result):
        ready = getattr(leaf, "block_until_ready", None)
        if ready is not None:
            ready()


def time_interleaved(
    candidates: Sequence[Candidate],
    *,
    repeats: int = 5,
    warmup: int = 3,
    block_s: float = 0.2,
    calls: int | None = None,
    warmup_s: float = 0.0,
    on_block: Callable[[str], None] | None = None,
) -> dict[str, Timing]:
    """Time several candidates round-robin: one block of each per repeat, rotating the order.

    Each candidate is warmed up first (``warmup`` untimed calls; the fastest
    of them, after the first, sizes its blocks). Then, for every repeat, each
    candidate runs one block of ``calls`` calls, the order rotating by one
    each repeat so no candidate always follows the same neighbour. Before a
    block ``reset()`` runs, young garbage is collected and the device
    synchronized, all untimed; inside a block the cyclic garbage collector is
    paused (as :mod:`timeit` does; reference counting still frees arrays).
    The clock stops after the device and the last call's arrays are ready.
    Minor page faults are counted over each block (outside the clock).

    Args:
        candidates: the contenders (unique names).
        repeats: timed blocks per candidate (>= 1).
        warmup: untimed calls per candidate before timing (>= 0; at least one
            runs when ``calls`` is None, to size the blocks; a candidate with
            its own ``warmup`` callable then also runs one untimed ``step()``).
        block_s: target seconds per block when ``calls`` is None: each
            candidate gets ``max(1, round(block_s / call time))`` calls.
        calls: calls per block for every candidate (overrides ``block_s``).
        warmup_s: keep warming up (beyond ``warmup`` calls) until this many
            seconds have passed: micro-steps need thousands of calls before
            caches, branch predictors, allocator and clock speed settle.
        on_block: called with the candidate's name after each block and each
            candidate's warm-up (e.g. to advance a progress bar).

    Returns:
        ``{name: Timing}`` in the candidates' order, with seconds and minor
        page faults per unit of work (``units``) of each repeat.
    """
    for name, value, lo in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        check_int("time_interleaved", name, value, lo)
    if calls is not None:
        check_int("time_interleaved", "calls", calls, 1)
    if not (isinstance(block_s, (int, float)) and block_s > 0):
        raise ValueError(f"time_interleaved: block_s must be > 0, got {block_s!r}.")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"time_interleaved: candidate names must be unique, got {names}.")
    n_calls: dict[str, int] = {}
    for c in candidates:
        if c.reset is not None:
            c.reset()
        warm = c.warmup or c.step
        times: list[float] = []
        began = time.perf_counter()
        while len(times) < max(warmup, 1 if calls is None else 0) or time.perf_counter() - began < warmup_s:
            start = time.perf_counter()
            _sync(c.backend, warm())
            times.append(time.perf_counter() - start)
        if calls is not None:
            n_calls[c.name] = calls
        else:
            if c.warmup is not None:  # the warm-up is other work: time one real call to size blocks
                start = time.perf_counter()
                _sync(c.backend, c.step())
                times = [time.perf_counter() - start]
            per_call = statistics.median(times[1:] or times)
            n_calls[c.name] = max(1, round(block_s / per_call)) if per_call > 0 else 1
        if on_block is not None:
            on_block(c.name)
    per_unit: dict[str, list[float]] = {c.name: [] for c in candidates}
    faults: dict[str, list[float]] = {c.name: [] for c in candidates}
    for r in range(repeats):
        k = r % len(candidates) if candidates else 0
        for c in [*candidates[k:], *candidates[:k]]:
            n = n_calls[c.name]
            if c.reset is not None:
                c.reset()
            gc.collect(1)  # the young generations: cheap even with torch and JAX loaded
            _sync(c.backend, None)
            gc_enabled = gc.isenabled()
            gc.disable()  # as timeit does: no collection lands in one candidate's block
            try:
                f0 = minor_faults()
                start = time.perf_counter()
                result = None
                for _ in range(n):
                    result = c.step()
                _sync(c.backend, result)
                elapsed = time.perf_counter() - start
                f1 = minor_faults()
                del result
            finally:
                if gc_enabled:
                    gc.enable()
            per_unit[c.name].append(elapsed / (n * c.units))
            if f0 is not None and f1 is not None:
                faults[c.name].append((f1 - f0) / (n * c.units))
            if on_block is not None:
                on_block(c.name)
    return {
        c.name: Timing(
            tuple(per_unit[c.name]),
            n_calls[c.name] * c.units,
            warmup,
            tuple(faults[c.name]) if len(faults[c.name]) == repeats else None,
        )
        for c in candidates
    }
