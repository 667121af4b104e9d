"""Flatten: ``(N, ...)`` -> ``(N, prod(...))``, e.g. between conv layers and a Linear."""

from __future__ import annotations

import math

from .._rng import Seed
from .base import Array, Backprop, Layer, Params, check_array, check_params

__all__ = ["Flatten"]


class Flatten(Layer):
    """Reshape X ``(N, d1, d2, ...)`` to ``(N, d1 * d2 * ...)`` in row-major order, like ``torch.nn.Flatten``.

    An NCHW image becomes its channels one after another, each row by row. No
    params; Y has X's dtype; dX is dY reshaped back to X's shape.

    Raises:
        ValueError: X is 0-d (no batch axis); params other than ``{}``.
        TypeError: X not a real floating array.

    >>> import numpy as np, portable_nn as pnn
    >>> pnn.Flatten()({}, np.zeros((2, 3, 4, 4))).shape
    (2, 48)
    """

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        check_params(self, params, {})
        xp = check_array(self, X)
        if X.ndim == 0:
            raise ValueError(f"{self!r}: X must have a batch axis (batch, ...), got a 0-d array.")
        shape = tuple(X.shape)
        Y = xp.reshape(X, (shape[0], math.prod(shape[1:])))

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            return xp.reshape(dY, shape), {}

        return Y, backprop
