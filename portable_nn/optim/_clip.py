"""Gradient clipping, by value and by global norm: array operations only, so it traces under ``jax.jit``."""

from __future__ import annotations

from typing import Any

from .._check import dtype_name
from .._tree import tree_flatten, tree_unflatten
from ..backends import namespace

__all__ = ["clip_grads"]


def _sum_squares(xp: Any, g: Any) -> Any:
    """0-d sum of ``g * g`` (float16 in float32, whose squares do not overflow for norms over 256)."""
    if dtype_name(g.dtype) == "float16":
        g = xp.astype(g, xp.float32)
    return xp.sum(g * g)


def clip_grads(grads: Any, *, clip_norm: float | None = None, clip_value: float | None = None) -> Any:
    """``grads`` clipped, as new arrays: each element to ``[-clip_value, clip_value]``, then by global norm.

    ``clip_value`` is ``torch.nn.utils.clip_grad_value_``. ``clip_norm`` is
    ``torch.nn.utils.clip_grad_norm_``'s formula exactly: with ``norm`` the
    2-norm of all leaves together, every leaf is multiplied by
    ``min(1, clip_norm / (norm + 1e-6))``. (optax's ``clip_by_global_norm``
    multiplies by ``clip_norm / max(norm, clip_norm)``: the same without the
    1e-6.) Array operations only, no host sync: it traces under ``jax.jit``.
    NaN/inf grads give NaN/inf grads, as in torch, for fit's NaN guard to see.
    The optimizers call it first, when given ``clip_norm`` or ``clip_value``,
    before weight decay, momentum and moments. With neither, ``grads`` itself
    is returned. The caller's arrays are never written.

    Args:
        grads: a pytree of floating arrays of one backend.
        clip_norm: the largest global 2-norm, > 0, or None.
        clip_value: the largest absolute element, > 0, or None.

    Returns:
        A pytree like ``grads`` (same shapes and dtypes).

    >>> import numpy as np, portable_nn as pnn
    >>> pnn.optim.clip_grads({"W": np.array([3.0, 4.0])}, clip_norm=1.0)["W"].round(6)
    array([0.6, 0.8])
    """
    leaves, treedef = tree_flatten(grads)
    if not leaves or (clip_norm is None and clip_value is None):
        return grads
    xp = namespace(*leaves)
    if clip_value is not None:
        leaves = [xp.clip(g, -clip_value, clip_value) for g in leaves]
    if clip_norm is not None:
        total = _sum_squares(xp, leaves[0])
        for g in leaves[1:]:
            total = total + _sum_squares(xp, g)
        scale = xp.clip(clip_norm / (xp.sqrt(total) + 1e-6), None, 1.0)
        leaves = [g * xp.astype(scale, g.dtype) for g in leaves]
    return tree_unflatten(treedef, leaves)
