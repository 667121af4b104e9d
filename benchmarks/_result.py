"""What a bench case returns: rows of measurements, targets, and how to print them.

A :class:`CaseResult` survives a round trip through JSON (cases may run in a
child process), and prints as a fixed-width table with its targets below.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["CaseResult", "Column", "Progress", "Target", "format_value", "json_safe"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Target:
    """A goal stated as a ratio of two measurements, e.g. ``portable_nn / GEMM only <= 1.2``.

    Attributes:
        goal: the goal in words.
        ratio_name: what the ratio divides, e.g. ``"t(portable_nn) / t(GEMM only)"``.
        ratio: the measured ratio (None when one side did not run).
        op: ``"<"``, ``"<="``, ``">"`` or ``">="``.
        threshold: the bound the ratio is compared with.
        note: caveats, e.g. a candidate below the accuracy bar.
        valid: False when the comparison does not count (e.g. not at the same accuracy).
        paired_ratio: the median of per-repeat ratios (see
            :func:`~benchmarks._common.paired_ratio`), shown for context;
            ``met`` is judged on ``ratio``, the ratio of the medians.
    """

    goal: str
    ratio_name: str
    ratio: float | None
    op: str
    threshold: float
    note: str = ""
    valid: bool = True
    paired_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"Target: op must be one of {', '.join(_OPS)}, got {self.op!r}.")

    @property
    def met(self) -> bool | None:
        """True/False when measured; None when a side did not run."""
        if self.ratio is None or not math.isfinite(self.ratio):
            return None
        return bool(_OPS[self.op](self.ratio, self.threshold)) and self.valid

    @property
    def status(self) -> str:
        """``"met"``, ``"MISSED"`` or ``"not run"``."""
        return {True: "met", False: "MISSED", None: "not run"}[self.met]

    def as_dict(self) -> dict[str, Any]:
        """Every field, and whether the target was ``met``."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "met": self.met}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        """The inverse of :meth:`as_dict` (``met`` is computed, not read)."""
        return cls(**_known_fields(cls, d))


@dataclass(frozen=True)
class Column:
    """A table column: header, the row key it shows, and its format (see :func:`format_value`)."""

    header: str
    key: str
    kind: str = "str"


def format_value(value: Any, kind: str) -> str:
    """Format one cell. Kinds: time (s), ratio, pct, int, float, gflops, mib, acc, str."""
    if value is None:
        return "-"
    if kind == "str" or isinstance(value, str):
        return str(value)
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    if kind == "time":
        for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
            if abs(v) >= scale or unit == "ns":
                return f"{v / scale:.3g} {unit}" if v / scale < 100 else f"{v / scale:.0f} {unit}"
    if kind == "ratio":
        return f"{v:.2f}x" if v < 100 else f"{v:.0f}x"
    if kind == "pct":
        return f"{100 * v:.1f}%"
    if kind == "int":
        return f"{v:.0f}"
    if kind == "gflops":
        return f"{v:.1f}"
    if kind == "mib":
        return f"{v:.1f}"
    if kind == "acc":
        return f"{v:.4f}"
    return f"{v:.3g}"


@dataclass
class CaseResult:
    """One case's measurements.

    Attributes:
        key: the case's letter (see :data:`benchmarks.runner.CASES`).
        title: one line saying what was measured.
        settings: sizes, repeats, block length... (JSON).
        columns: how :meth:`table` shows ``rows``.
        rows: one dict per candidate (or configuration), ``"name"`` first.
        targets: goals checked on these measurements.
        skipped: candidates not run, with why (e.g. a library not installed).
        failed: candidates that raised, with the error.
        notes: extra lines printed under the table.
        environment: what this case's process saw (threads, versions).
        elapsed_s: wall time of the whole case.
    """

    key: str
    title: str
    settings: dict[str, Any] = field(default_factory=dict)
    columns: list[Column] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def note_agreement(self, after: str, tolerance: float) -> None:
        """Add a note with the largest ``loss_dev`` of the rows (flagged when above ``tolerance``)."""
        worst = max((r["loss_dev"] for r in self.rows if r.get("loss_dev") is not None), default=None)
        if worst is not None:
            flag = "" if worst < tolerance else "  <-- implementations DISAGREE"
            self.notes.append(f"loss after {after} agrees with portable_nn's to {worst:.1e} relative{flag}")

    def row(self, name: str) -> dict[str, Any] | None:
        """The row called ``name``, or None."""
        return next((r for r in self.rows if r.get("name") == name), None)

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form (non-finite floats become strings, see :func:`json_safe`)."""
        return json_safe(
            {
                "key": self.key,
                "title": self.title,
                "settings": self.settings,
                "columns": [[c.header, c.key, c.kind] for c in self.columns],
                "rows": self.rows,
                "targets": [t.as_dict() for t in self.targets],
                "skipped": self.skipped,
                "failed": self.failed,
                "notes": self.notes,
                "environment": self.environment,
                "elapsed_s": self.elapsed_s,
            }
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaseResult:
        """The inverse of :meth:`as_dict` (e.g. a child process's result)."""
        columns = [Column(*c) for c in d.get("columns", [])]
        targets = [Target.from_dict(t) for t in d.get("targets", [])]
        return cls(**{**_known_fields(cls, d), "columns": columns, "targets": targets})

    def table(self) -> str:
        """The rows as an aligned text table, then targets, skipped/failed candidates and notes."""
        lines = [f"{self.key}. {self.title}"]
        if self.rows and self.columns:
            cells = [[c.header for c in self.columns]]
            cells += [[format_value(r.get(c.key), c.kind) for c in self.columns] for r in self.rows]
            widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
            for j, row in enumerate(cells):
                text = "  ".join(
                    cell.ljust(w) if i == 0 else cell.rjust(w)
                    for i, (cell, w) in enumerate(zip(row, widths, strict=True))
                )
                lines.append("  " + text.rstrip())
                if j == 0:
                    lines.append("  " + "  ".join("-" * w for w in widths))
        for name, why in self.skipped.items():
            lines.append(f"  skipped {name}: {why}")
        for name, why in self.failed.items():
            lines.append(f"  FAILED {name}: {why}")
        if self.targets:
            lines.append("  targets:")
            width = max(len(t.goal) for t in self.targets)
            for t in self.targets:
                measured = "not run" if t.ratio is None else f"{t.ratio:.3g}"
                if t.paired_ratio is not None:
                    measured += f" [paired {t.paired_ratio:.3g}]"
                note = f"  ({t.note})" if t.note else ""
                lines.append(
                    f"    [{t.status:>7}] {t.goal.ljust(width)}  {t.ratio_name} = {measured} "
                    f"(goal {t.op} {t.threshold:g}){note}"
                )
        lines.extend(f"  note: {n}" for n in self.notes)
        lines.append(f"  ({self.elapsed_s:.1f} s)")
        return "\n".join(lines)


def _known_fields(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``d`` that are fields of dataclass ``cls`` (the others' defaults stand)."""
    return {f.name: d[f.name] for f in fields(cls) if f.name in d}


def json_safe(value: Any) -> Any:
    """``value`` with tuples as lists, NumPy scalars as Python numbers and inf/NaN as strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if hasattr(value, "item") and callable(value.item):  # NumPy scalar / 0-d array
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return value
    return str(value)


class Progress:
    """A tqdm bar on stderr (only when enabled); counts timed blocks."""

    def __init__(self, enabled: bool | None, total: int, desc: str) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._bar: Any = None
        if enabled and total > 0:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="block", leave=False, mininterval=0.25)

    def update(self, label: str = "", n: int = 1) -> None:
        if self._bar is not None:
            if label:
                self._bar.set_postfix_str(label, refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
