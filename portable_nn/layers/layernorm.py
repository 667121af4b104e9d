"""LayerNorm over the last axis, with learned scale ``gamma`` and shift ``beta``."""

from __future__ import annotations

import numpy as np

from .._check import real_number
from .._rng import Seed
from ..backends import Backend
from .base import Array, Backprop, Layer, Params, check_array, check_int, check_params, is_half, upcast

__all__ = ["LayerNorm"]


class LayerNorm(Layer):
    """``Y = (X - mean) / sqrt(var + eps) * gamma + beta`` over the last axis.

    Args:
        features: size of X's last axis (>= 1).
        eps: added to the variance, > 0 (default 1e-5).

    Params: ``{"gamma": (features,), "beta": (features,)}`` (ones and zeros).
    Shapes: X ``(..., features)`` -> Y of the same shape and dtype. The
    variance is the biased one (divided by ``features``), as in PyTorch.
    Half-precision X (mixed precision): the statistics, the normalization and
    the backward run in float32; Y, dX and the grads come back in X's and the
    params' dtypes.

    Raises:
        ValueError: ``features`` < 1 or ``eps`` <= 0; X whose last axis is not
            ``features``; params of another shape or device.
        TypeError: X not a real floating array, or of another dtype or library than the params.
    """

    float32_ops = ("mean and variance", "normalization and its backward")

    def __init__(self, features: int, *, eps: float = 1e-5) -> None:
        self.features = check_int("LayerNorm", "features", features, 1)
        self.eps = real_number("LayerNorm", "eps", eps, lo=0, lo_open=True)

    def __repr__(self) -> str:
        return f"LayerNorm({self.features})" if self.eps == 1e-5 else f"LayerNorm({self.features}, eps={self.eps})"

    def init_params(self, rng: np.random.Generator, be: Backend, dtype: str) -> Params:
        return {
            "gamma": be.asarray(np.ones(self.features, dtype=dtype)),
            "beta": be.asarray(np.zeros(self.features, dtype=dtype)),
        }

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        gamma, beta = check_params(self, params, {"gamma": (self.features,), "beta": (self.features,)})
        xp = check_array(self, X, like=gamma, features=self.features)
        half = is_half(X.dtype)
        if half:  # float32 statistics and normalization (see float32_ops)
            X, gamma, beta = upcast(xp, X), upcast(xp, gamma), upcast(xp, beta)
        batch_axes = tuple(range(X.ndim - 1))
        Xc = X - xp.mean(X, axis=-1, keepdims=True)
        inv_std = 1.0 / xp.sqrt(xp.mean(Xc * Xc, axis=-1, keepdims=True) + self.eps)
        Xhat = Xc * inv_std
        Y = Xhat * gamma + beta

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            low = dY.dtype
            dY = upcast(xp, dY)
            grads = {"gamma": xp.sum(dY * Xhat, axis=batch_axes), "beta": xp.sum(dY, axis=batch_axes)}
            if half:
                grads = {k: xp.astype(g, low) for k, g in grads.items()}
            if not need_dX:
                return None, grads
            dXhat = dY * gamma
            dX = inv_std * (
                dXhat
                - xp.mean(dXhat, axis=-1, keepdims=True)
                - Xhat * xp.mean(dXhat * Xhat, axis=-1, keepdims=True)
            )
            return (xp.astype(dX, low) if half else dX), grads

        return (xp.astype(Y, params["gamma"].dtype) if half else Y), backprop
