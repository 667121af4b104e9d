"""Residual: ``Y = X + layer(X)``, a skip connection around any layer."""

from __future__ import annotations

import numpy as np

from .._rng import Seed
from ..backends import Backend
from .base import Array, Backprop, Layer, Params, State, run_backprop

__all__ = ["Residual"]


class Residual(Layer):
    """A skip connection: ``Y = X + layer(X)``; its backprop is ``dX = dY + layer's dX``.

    Args:
        layer: any layer (a :class:`Sequential` for a branch of several) whose
            output has X's shape, e.g. ``Residual(Sequential(LayerNorm(d), Linear(d, d)))``.

    Params: the inner layer's params, unchanged (no extra nesting), so
    ``Residual(layer).init(...)`` equals ``layer.init(...)``; the model state
    too, for an inner layer with one. Shapes: X of any shape the layer maps to
    itself -> Y of the same shape and dtype. A composite layer with branches
    (see :class:`TransformerBlock`) applies one Residual per branch.

    Raises:
        TypeError: ``layer`` is not a Layer.
        ValueError: the layer's output shape differs from X's (both named).

    >>> import numpy as np, portable_nn as pnn
    >>> inner = pnn.Linear(4, 4)
    >>> block = pnn.Residual(inner)
    >>> params = block.init(seed=0, backend="numpy")                # Linear's own {"W", "b"}
    >>> X = np.ones((3, 4), dtype="float32")
    >>> bool(np.allclose(block(params, X), X + inner(params, X)))
    True
    """

    def __init__(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(
                f"Residual: layer must be a Layer, got {type(layer).__name__}. "
                "Pass a layer instance, e.g. Residual(Sequential(LayerNorm(16), Linear(16, 16)))."
            )
        self.layer = layer

    def __repr__(self) -> str:
        return f"Residual({self.layer!r})"

    def init_params(self, rng: np.random.Generator, be: Backend, dtype: str) -> Params:
        return self.layer.init_params(rng, be, dtype)

    def init_state(self, be: Backend, dtype: str) -> State:
        return self.layer.init_state(be, dtype)

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        Y, _, backprop = self._run(params, None, X, train, rng)
        return Y, backprop

    def apply_with_state(
        self, params: Params, state: State, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, State, Backprop]:
        """``apply`` with the inner layer's state passed through to it."""
        return self._run(params, state, X, train, rng)

    def _run(
        self, params: Params, state: State, X: Array, train: bool, rng: Seed
    ) -> tuple[Array, State, Backprop]:
        if state is None:
            F, inner = self.layer.apply(params, X, train=train, rng=rng)
        else:
            F, state, inner = self.layer.apply_with_state(params, state, X, train=train, rng=rng)
        if tuple(F.shape) != tuple(X.shape):
            raise ValueError(
                f"{self!r}: the layer maps X of shape {tuple(X.shape)} to {tuple(F.shape)}; a residual "
                "branch must keep X's shape to be added to it. Make its output size equal its input size."
            )

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            dF, grads = run_backprop(inner, dY, need_dX)
            return (dY + dF if need_dX else None), grads

        return X + F, state, backprop
