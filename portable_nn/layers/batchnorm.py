"""BatchNorm: normalize each channel by batch statistics in training, running statistics at inference.

The first layer with a model state (see ``base``): its running mean and
variance are updated by each training forward pass and returned as the new
state; the optimizer trains only ``gamma`` and ``beta``. Conventions follow
``torch.nn.BatchNorm1d/2d``: the batch variance normalizes with ``1/m`` and
updates the running variance with ``1/(m - 1)``, ``running = (1 - momentum) *
running + momentum * batch``.
"""

from __future__ import annotations

import math

import numpy as np

from .._check import real_number
from .._rng import Seed
from ..backends import Backend
from .base import Array, Backprop, Layer, Params, State, check_array, check_int, check_params, is_half

__all__ = ["BatchNorm"]


class BatchNorm(Layer):
    """``Y = (X - mean) / sqrt(var + eps) * gamma + beta`` per channel (axis 1).

    In training (``train=True``) ``mean`` and ``var`` are the batch's, over
    every axis but 1; the running statistics in the state move towards them by
    ``momentum``. At inference the running statistics are used.

    Params: ``{"gamma": (features,), "beta": (features,)}`` (ones and zeros).
    State: ``{"mean": (features,), "var": (features,)}`` (zeros and ones).
    Shapes: X ``(batch, features)`` or ``(batch, features, *spatial)`` (e.g.
    NCHW images after a Conv2D) -> Y of the same shape and dtype.

    A model with a BatchNorm is stateful: ``model.init()`` returns
    ``Variables(params, state)``; run it with ``model(variables, X)``,
    ``pnn.predict``/``pnn.fit``, or ``apply_with_state``. Conventions are
    PyTorch's: the biased variance normalizes, the unbiased one updates
    ``running = (1 - momentum) * running + momentum * batch``.

    Half-precision X (mixed precision): the batch statistics, the running
    statistics, the normalization and its backward run in the state's dtype
    (the float32 master dtype); Y, dX and the grads come back in X's and the
    params' dtypes.

    Args:
        features: channels (size of axis 1), >= 1.
        momentum: in [0, 1] (default 0.1).
        eps: added to the variance, > 0 (default 1e-5).

    Raises:
        TypeError: ``apply`` called without the state (use the Variables); X not
            a real floating array, or of another dtype or library than the params.
        ValueError: settings out of range; X whose axis 1 is not ``features``; a
            state of another model; a batch with one value per channel in training.
    """

    float32_ops = ("batch statistics", "running statistics", "normalization and its backward")

    def __init__(self, features: int, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        self.features = check_int("BatchNorm", "features", features, 1)
        self.momentum = real_number("BatchNorm", "momentum", momentum, lo=0, hi=1)
        self.eps = real_number("BatchNorm", "eps", eps, lo=0, lo_open=True)

    def __repr__(self) -> str:
        extra = "" if self.momentum == 0.1 else f", momentum={self.momentum}"
        extra += "" if self.eps == 1e-5 else f", eps={self.eps}"
        return f"BatchNorm({self.features}{extra})"

    @property
    def stateful(self) -> bool:
        """BatchNorm keeps running statistics."""
        return True

    def init_params(self, rng: np.random.Generator, be: Backend, dtype: str) -> Params:
        return {
            "gamma": be.asarray(np.ones(self.features, dtype=dtype)),
            "beta": be.asarray(np.zeros(self.features, dtype=dtype)),
        }

    def init_state(self, be: Backend, dtype: str) -> State:
        return {
            "mean": be.asarray(np.zeros(self.features, dtype=dtype)),
            "var": be.asarray(np.ones(self.features, dtype=dtype)),
        }

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        raise TypeError(
            f"{self!r} keeps running statistics (a model state), so it runs with its state: "
            "model(variables, X), pnn.predict(model, variables, X) or pnn.fit with the Variables "
            "from model.init(), or layer.apply_with_state(params, state, X)."
        )

    def apply_with_state(
        self, params: Params, state: State, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, State, Backprop]:
        shape = {"gamma": (self.features,), "beta": (self.features,)}
        gamma, beta = check_params(self, params, shape)
        mean_r, var_r = self._check_state(state)
        xp = check_array(self, X, like=gamma, axes="(batch, features, ...)")
        low = X.dtype if is_half(X.dtype) else None
        if low is not None:  # statistics and normalization in the state's (master) dtype: see float32_ops
            X, gamma, beta = (xp.astype(a, mean_r.dtype) for a in (X, gamma, beta))
        if X.ndim < 2 or X.shape[1] != self.features:
            raise ValueError(
                f"{self!r}: X must be (batch, {self.features}) or (batch, {self.features}, ...) with the "
                f"features (channels) on axis 1, got shape {tuple(X.shape)}. Check BatchNorm's features."
            )
        check_array(self, mean_r, like=gamma, name="state['mean']")
        axes = (0, *range(2, X.ndim))
        bshape = (1, self.features) + (1,) * (X.ndim - 2)
        g = xp.reshape(gamma, bshape)
        m = math.prod(X.shape) // self.features  # values per channel
        if train:
            if m < 2:
                raise ValueError(
                    f"{self!r}: training needs more than one value per channel to take batch statistics, "
                    f"got X of shape {tuple(X.shape)}. Use a batch of at least 2 rows."
                )
            mean = xp.mean(X, axis=axes, keepdims=True)
            Xc = X - mean
            var = xp.mean(Xc * Xc, axis=axes, keepdims=True)
            mom = self.momentum
            new_state = {
                "mean": (1 - mom) * mean_r + mom * xp.reshape(mean, (self.features,)),
                "var": (1 - mom) * var_r + mom * xp.reshape(var, (self.features,)) * (m / (m - 1)),
            }
        else:
            Xc, var, new_state = X - xp.reshape(mean_r, bshape), xp.reshape(var_r, bshape), state
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        Xhat = Xc * inv_std
        Y = Xhat * g + xp.reshape(beta, bshape)

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            if low is not None:
                dY = xp.astype(dY, Xhat.dtype)
            grads = {"gamma": xp.sum(dY * Xhat, axis=axes), "beta": xp.sum(dY, axis=axes)}
            if low is not None:
                grads = {k: xp.astype(v, low) for k, v in grads.items()}
            if not need_dX:
                return None, grads
            dXhat = dY * g
            if not train:  # the statistics are constants
                dX = dXhat * inv_std
            else:
                dX = inv_std * (
                    dXhat
                    - xp.mean(dXhat, axis=axes, keepdims=True)
                    - Xhat * xp.mean(dXhat * Xhat, axis=axes, keepdims=True)
                )
            return (dX if low is None else xp.astype(dX, low)), grads

        return (Y if low is None else xp.astype(Y, low)), new_state, backprop

    def _check_state(self, state: State) -> tuple[Array, Array]:
        want = (self.features,)
        try:
            if type(state) is dict and len(state) == 2 and all(tuple(state[k].shape) == want for k in ("mean", "var")):
                return state["mean"], state["var"]
        except (KeyError, AttributeError):
            pass
        if isinstance(state, dict) and not state:
            raise ValueError(
                f"{self!r}: its state is empty ({{}}), the state of a layer without one. A composite layer "
                "holding a BatchNorm must override init_state (and apply_with_state) to give each child its "
                "own, as Sequential does."
            )
        if state is None:
            raise ValueError(
                f"{self!r}: its state (running mean and var) is missing. Pass the Variables from "
                "model.init() (or layer.init_state(...)), not only the params."
            )
        got = (
            {k: tuple(getattr(v, "shape", ())) for k, v in state.items()}
            if isinstance(state, dict) else type(state).__name__
        )
        raise ValueError(
            f"{self!r}: the state does not fit this layer: expected mean {want} and var {want}, got {got}. "
            "Was it made by another model? Use the Variables from this model's init()."
        )
