"""Agreement between two training runs: per-step relative loss deviation, final parameter deviation.

Both work on host copies in float64 (``to_numpy``), so the measurement itself
adds no rounding and any two backends can be compared.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import tree_paths
from ..backends import to_numpy
from ..layers.base import Params

REFERENCE = "numpy"
"""The backend every other is compared with: NumPy, the oracle."""

__all__ = ["REFERENCE", "loss_deviations", "max_loss_deviation", "param_deviation"]


def loss_deviations(losses: Any, reference: Any) -> np.ndarray:
    """Per-step relative deviation ``|loss - ref| / |ref|`` (float64, same length as the inputs).

    Equal values (including equal infinities) give 0; a NaN or inf on one side only gives inf.
    """
    a = np.asarray(losses, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape or a.ndim != 1:
        raise ValueError(
            f"loss_deviations: losses have shape {a.shape} and the reference {r.shape}; "
            "pass two 1-d sequences of the same length (runs of the same number of steps)."
        )
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        dev = np.abs(a - r) / np.maximum(np.abs(r), np.finfo(np.float64).tiny)
    dev = np.where(a == r, 0.0, dev)
    return np.where(np.isnan(dev), np.inf, dev)


def max_loss_deviation(losses: Any, reference: Any) -> float:
    """The largest per-step relative loss deviation (see :func:`loss_deviations`); 0 for empty runs."""
    dev = loss_deviations(losses, reference)
    return float(dev.max()) if dev.size else 0.0


def param_deviation(params: Params, reference: Params) -> float:
    """``max |p - p_ref|`` over all elements of all leaves, divided by ``max |p_ref|``.

    Args:
        params, reference: pytrees of the same structure, arrays of any backend.

    Returns:
        A float >= 0 (inf if a value is NaN on one side only).

    Raises:
        ValueError: the trees differ in structure or a leaf in shape.
    """
    got, ref = dict(tree_paths(params)), dict(tree_paths(reference))
    if got.keys() != ref.keys():
        raise ValueError(
            f"param_deviation: the trees differ: params have leaves {sorted(got)}, "
            f"the reference {sorted(ref)}. Compare params of the same model."
        )
    diff, scale = 0.0, 0.0
    for path, leaf in ref.items():
        r = to_numpy(leaf).astype(np.float64)
        a = to_numpy(got[path]).astype(np.float64)
        if a.shape != r.shape:
            raise ValueError(f"param_deviation: leaf {path!r} has shape {a.shape}, the reference {r.shape}.")
        if a.size:
            same = (a == r) | (np.isnan(a) & np.isnan(r))
            d = np.where(same, 0.0, np.abs(a - r))
            diff = max(diff, float(np.nan_to_num(d, nan=np.inf).max()))
            scale = max(scale, float(np.nanmax(np.abs(r), initial=0.0)))
    if diff == 0.0:
        return 0.0
    return diff / scale if scale > 0 else math.inf
