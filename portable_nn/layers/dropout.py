"""Dropout with a host-drawn mask, so a seed gives the same mask on every backend."""

from __future__ import annotations

import array_api_compat

from .._check import dtype_name, real_number
from .._rng import Seed, host_rng
from .base import Array, Backprop, Layer, Params, check_array, check_params, no_grads

__all__ = ["Dropout"]


class Dropout(Layer):
    """Zero each element with probability ``rate`` while training; scale the rest by ``1/(1-rate)``.

    At inference (``train=False``) it is the identity. The mask is drawn on the
    host from ``rng`` (a ``numpy.random.Generator`` or seed; ``fit`` passes one
    derived from its seed) and copied to X's device.

    Args:
        rate: the probability of zeroing an element, in [0, 1) (default 0.5).

    Shapes: X of any shape -> Y of the same shape and dtype. No params (``{}``).
    ``fit`` runs a model with dropout on the portable code (never a compiled
    JAX loop, which would freeze the mask).

    Raises:
        ValueError: ``rate`` outside [0, 1); params other than ``{}``.
        TypeError: X not a real floating array.

    >>> import numpy as np, portable_nn as pnn
    >>> pnn.Dropout(0.5).apply({}, np.ones(4), train=True, rng=0)[0]
    array([2., 0., 0., 0.])
    """

    def __init__(self, rate: float = 0.5) -> None:
        self.rate = real_number("Dropout", "rate", rate, lo=0, hi=1, hi_open=True)

    def __repr__(self) -> str:
        return f"Dropout({self.rate})"

    @property
    def draws_host_rng(self) -> bool:
        """Dropout draws its mask on the host while training (unless ``rate`` is 0)."""
        return self.rate > 0

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        check_params(self, params, {})
        xp = check_array(self, X)
        if not train or self.rate == 0.0:
            return X, no_grads
        keep = host_rng(rng).random(tuple(X.shape)) >= self.rate
        name = dtype_name(X.dtype)
        if name == "bfloat16":  # NumPy has none: the float32 mask (1 / (1 - rate) rounded once more on the device)
            mask = xp.astype(xp.asarray((keep / (1.0 - self.rate)).astype("float32"), device=array_api_compat.device(X)),
                             X.dtype)
        else:
            mask = xp.asarray((keep / (1.0 - self.rate)).astype(name), device=array_api_compat.device(X))
        Y = X * mask

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            return dY * mask, {}

        return Y, backprop
