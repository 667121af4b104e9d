"""Results of a comparison run and their text table and JSON forms (the PNG: :mod:`.plotting`)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends import Backend
from ..layers.base import Params
from ._deviation import REFERENCE
from .timing import Timing

__all__ = ["REFERENCE", "BackendResult", "Comparison", "RecordedRun"]


@dataclass(frozen=True)
class RecordedRun:
    """An untimed training run.

    Attributes:
        losses: float64 ``(steps,)``: the loss of step ``t``, computed before its update.
        params: the final params as a pytree of host ``numpy.ndarray``.
    """

    losses: np.ndarray
    params: Params


@dataclass(frozen=True)
class BackendResult:
    """One backend's timing and agreement with the reference.

    ``loss_deviation``, ``param_deviation`` and ``speedup`` are ``None`` when the
    reference did not run.
    """

    label: str
    backend: Backend
    device: str
    dtype: str
    timing: Timing
    run: RecordedRun
    loss_deviation: float | None = None
    param_deviation: float | None = None
    speedup: float | None = None


@dataclass(frozen=True)
class Comparison:
    """The outcome of :func:`run_comparison`.

    Attributes:
        problem: the problem's name; ``description`` says what it trains.
        steps: steps of every run; ``settings`` holds all the options.
        results: one entry per backend that ran, the reference first.
        missing: backend spec -> why it could not run (not installed, no such
            device, dtype unsupported); the message says how to fix it.
        failed: backend spec -> the error it raised while running.
        env: versions, CPU and devices (see ``portable_nn.tools.environment.environment()``).
    """

    problem: str
    description: str
    dtype: str
    steps: int
    settings: dict[str, Any]
    results: list[BackendResult]
    missing: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """The results as a fixed-width text table, with missing and failed backends below it."""
        head = (
            "backend",
            "device",
            "dtype",
            "time/step",
            "spread",
            "steps/s",
            "vs numpy",
            "loss dev",
            "param dev",
        )
        rows = [head]
        for r in self.results:
            ref = r.label == REFERENCE
            rows.append(
                (
                    r.label,
                    r.device,
                    r.dtype,
                    _seconds(r.timing.median),
                    _percent(_spread(r.timing)),
                    f"{r.timing.steps_per_s:,.0f}",
                    "-" if r.speedup is None else f"{r.speedup:.2f}x",
                    "ref" if ref else _dev(r.loss_deviation),
                    "ref" if ref else _dev(r.param_deviation),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        left = 3  # backend, device, dtype are left-aligned; numbers right-aligned
        lines = [
            f"problem {self.problem}: {self.description}",
            f"{self.steps} steps, {self.dtype}; time/step is the median of {self.settings['repeats']} "
            f"synchronized repeats after {self.settings['warmup']} warm-up steps "
            "(spread = interquartile range / median; n/a with fewer than 2 repeats)",
            f"timed: {self.settings.get('timed', 'the portable code')}",
            "",
        ]
        for k, row in enumerate(rows):
            cells = [
                c.ljust(w) if i < left else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
        lines.append(
            "loss dev: max over steps of |loss - loss_numpy| / |loss_numpy|; "
            "param dev: max |p - p_numpy| / max |p_numpy| after the last step."
        )
        for spec, why in self.missing.items():
            lines.append(f"missing {spec}: {why}")
        for spec, why in self.failed.items():
            lines.append(f"FAILED {spec}: {why}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form: settings, environment, and per backend the timing, deviations and losses.

        ``timing.spread_iqr_rel`` is ``None`` (JSON ``null``) with fewer than 2
        repeats: one repeat has no spread to measure.
        """
        return {
            "problem": self.problem,
            "description": self.description,
            "dtype": self.dtype,
            "steps": self.steps,
            "settings": self.settings,
            "reference": REFERENCE,
            "environment": self.env,
            "backends": {
                r.label: {
                    "name": r.backend.name,
                    "device": r.device,
                    "dtype": r.dtype,
                    "timing": {
                        k: _json_number(v)
                        for k, v in {**r.timing.as_dict(), "spread_iqr_rel": _spread(r.timing)}.items()
                    },
                    "speedup_vs_numpy": _json_number(r.speedup),
                    "max_rel_loss_deviation": _json_number(r.loss_deviation),
                    "max_param_deviation": _json_number(r.param_deviation),
                    "final_loss": _finite_or_none(r.run.losses[-1]) if r.run.losses.size else None,
                    "losses": [_finite_or_none(v) for v in r.run.losses],
                }
                for r in self.results
            },
            "missing": self.missing,
            "failed": self.failed,
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`as_dict` to ``path`` as strict JSON.

        A NaN or inf loss is written as ``null``; a non-finite statistic (e.g. the
        deviation of a run that diverged) as the string ``"inf"``, ``"-inf"`` or ``"nan"``.
        """
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.as_dict(), f, indent=1, allow_nan=False)
            f.write("\n")


def _spread(timing: Timing) -> float | None:
    """The repeats' interquartile range / median; None with fewer than 2 repeats (nothing measured)."""
    return timing.spread if len(timing.per_step) >= 2 else None


def _percent(v: float | None) -> str:
    return "n/a" if v is None else f"±{100 * v:.0f}%"


def _json_number(v: Any) -> Any:
    """Floats stay floats; inf and NaN become strings (strict JSON has no such numbers); lists recurse."""
    if isinstance(v, list):
        return [_json_number(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _finite_or_none(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _seconds(t: float) -> str:
    if t >= 1.0:
        return f"{t:.3g} s"
    if t >= 1e-3:
        return f"{t * 1e3:.3g} ms"
    return f"{t * 1e6:.3g} us"


def _dev(d: float | None) -> str:
    if d is None:
        return "-"
    return "0" if d == 0 else f"{d:.1e}"
