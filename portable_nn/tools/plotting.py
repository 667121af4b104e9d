"""A PNG of a comparison: loss curves overlaid, deviation from NumPy per step, time per step.

    result = run_comparison(["numpy", "torch"], "seed")
    write_plot(result, "compare.png")      # what ``python -m portable_nn compare --plot FILE`` writes

matplotlib is optional (``pip install 'portable_nn[plot]'``). The figure is
drawn with the Agg canvas directly, so no pyplot state or GUI backend is touched.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from ._compare_result import Comparison
from ._deviation import REFERENCE, loss_deviations
from .arguments import unwritable

__all__ = ["PLOT_INSTALL_HINT", "checked_plot_path", "require_matplotlib", "write_plot"]

PLOT_INSTALL_HINT = "pip install 'portable_nn[plot]'"
_ZERO = 1e-18  # where an exact 0 deviation is drawn on the log axis


def require_matplotlib() -> Any:
    """Import matplotlib or raise ModuleNotFoundError saying how to install it."""
    try:
        import matplotlib
    except ImportError as e:
        raise ModuleNotFoundError(
            f"writing a plot needs matplotlib, which is not installed ({e}). Install it with: {PLOT_INSTALL_HINT}"
        ) from e
    return matplotlib


def checked_plot_path(parser: argparse.ArgumentParser, path: str | None) -> str | None:
    """A script's ``--plot`` path, checked before any work: a usage error (exit status 2) when it
    cannot be written or matplotlib is missing, as ``compare --plot`` has. None stays None."""
    if path is not None:
        bad = unwritable(("--plot", path))
        if bad is not None:
            parser.error(bad)
        try:
            require_matplotlib()
        except ModuleNotFoundError as e:
            parser.error(f"--plot: {e}")
    return path


def write_plot(comparison: Comparison, path: str | os.PathLike[str]) -> None:
    """Write a PNG with three panels: losses (log scale), relative loss deviation from NumPy, time/step.

    Raises:
        ModuleNotFoundError: matplotlib is missing (the message says how to install it).
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    results = comparison.results
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_dev, ax_time = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    colors = [f"C{i}" for i in range(len(results))]
    styles = ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 2))]
    ref = next((r for r in results if r.label == REFERENCE), None)

    for k, (r, color) in enumerate(zip(results, colors, strict=True)):
        steps = np.arange(r.run.losses.size)
        width = 3.0 if k == 0 else 1.6
        ax_loss.plot(steps, r.run.losses, color=color, ls=styles[k % len(styles)], lw=width, label=r.label)
        if ref is not None and r is not ref:
            dev = np.maximum(loss_deviations(r.run.losses, ref.run.losses), _ZERO)
            ax_dev.plot(
                steps,
                dev,
                color=color,
                lw=0.6,
                alpha=0.9,
                marker="o",
                ms=2.5,
                label=f"{r.label} (max {_fmt(r.loss_deviation)})",
            )
    ax_loss.set_yscale("log")
    ax_loss.set(xlabel="step", ylabel="loss", title=f"loss per step ({comparison.dtype})")
    ax_loss.legend(title="lines overlap where backends agree", fontsize="small", title_fontsize="small")
    ax_loss.grid(True, which="major", alpha=0.3)

    ax_dev.set_yscale("log")
    ax_dev.set(
        xlabel="step", ylabel="|loss - loss_numpy| / |loss_numpy|", title="relative loss deviation from NumPy"
    )
    ax_dev.axhline(_ZERO, color="0.6", lw=0.8)
    ax_dev.annotate(
        "exactly 0", (0, _ZERO), xytext=(2, 3), textcoords="offset points", fontsize="small", color="0.4"
    )
    eps = np.finfo(comparison.dtype).eps if comparison.dtype in ("float32", "float64") else None
    if eps is not None:
        ax_dev.axhline(eps, color="0.3", lw=0.8, ls="--")
        ax_dev.annotate(
            f"{comparison.dtype} eps", (0, eps), xytext=(2, 3), textcoords="offset points", fontsize="small"
        )
    if len(results) > 1:
        ax_dev.legend(fontsize="small")
    ax_dev.grid(True, which="major", alpha=0.3)

    labels = [r.label for r in results]
    med = np.array([r.timing.median for r in results]) * 1e3
    lo = med - np.array([r.timing.min for r in results]) * 1e3
    hi = np.array([r.timing.max for r in results]) * 1e3 - med
    x = np.arange(len(results))
    ax_time.bar(x, med, color=colors, yerr=np.vstack([lo, hi]), capsize=4)
    for xi, (m, top, r) in enumerate(zip(med, med + hi, results, strict=True)):
        note = f"{m:.3g} ms" + ("" if r.speedup is None else f"\n{r.speedup:.2f}x vs numpy")
        ax_time.annotate(
            note, (xi, top), xytext=(0, 4), textcoords="offset points", ha="center", fontsize="small"
        )
    ax_time.set_xticks(x, labels, rotation=20, ha="right")
    ax_time.set(ylabel="ms per step (median; whiskers: min-max)", title="time per step (lower is faster)")
    if med.size and med.min() > 0 and med.max() / med.min() > 30:
        ax_time.set_yscale("log")
        ax_time.set_ylim(top=ax_time.get_ylim()[1] * 3)
    else:
        ax_time.set_ylim(0, float((med + hi).max()) * 1.3 if med.size else 1)

    fig.suptitle(f"portable_nn compare: {comparison.problem}, {comparison.steps} steps, {comparison.dtype}")
    fig.savefig(os.fspath(path), dpi=110)


def _fmt(d: float | None) -> str:
    return "-" if d is None else ("0" if d == 0 else f"{d:.1e}")
