"""Sequential: layers run in order; their backprop closures run in reverse."""

from __future__ import annotations

import numpy as np

from .._rng import Seed, host_rng
from ..backends import Backend
from .base import Array, Backprop, Layer, Params, State, run_backprop

__all__ = ["Sequential"]


class Sequential(Layer):
    """A chain of layers. Its params are a list with one entry per layer.

    ``apply`` runs the layers in order and returns a backprop that runs their
    closures in reverse, asking the first layer for no dX when it is not needed.
    X and Y are the first layer's input and the last one's output. Errors name
    the failing layer by position (``Sequential layer 0: Linear(3, 2): ...``).
    For a model with a stateful layer (BatchNorm), ``init`` returns
    :class:`~portable_nn.Variables` and its state is a list, one entry per layer.

    Raises:
        TypeError: an item that is not a Layer; params that are not a list of
            one entry per layer.

    The notebook's net:

    >>> import numpy as np, portable_nn as pnn
    >>> model = pnn.Sequential(pnn.Linear(3, 2, bias=False), pnn.ReLU(), pnn.Linear(2, 1, bias=False))
    >>> params = model.init(seed=0, backend="numpy", dtype="float64")   # [{"W": (3, 2)}, {}, {"W": (2, 1)}]
    >>> Y, backprop = model.apply(params, np.ones((4, 3)), train=True)  # X (4, 3) -> Y (4, 1)
    >>> dX, grads = backprop(np.ones((4, 1)))                           # grads mirror params
    >>> [{k: v.shape for k, v in g.items()} for g in grads]
    [{'W': (3, 2)}, {}, {'W': (2, 1)}]
    """

    def __init__(self, *layers: Layer) -> None:
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"Sequential: item {i} is {type(layer).__name__}, not a Layer. "
                    "Pass layer instances, e.g. Sequential(Linear(3, 2), ReLU())."
                )
        self.layers = tuple(layers)

    def __repr__(self) -> str:
        return "Sequential(" + ", ".join(map(repr, self.layers)) + ")"

    @property
    def takes_indices(self) -> bool:
        """Whether the first layer takes integer indices (a model that starts with an embedding)."""
        return bool(self.layers) and self.layers[0].takes_indices

    def __len__(self) -> int:
        return len(self.layers)

    def init_params(self, rng: np.random.Generator, be: Backend, dtype: str) -> Params:
        return [layer.init_params(rng, be, dtype) for layer in self.layers]

    def init_state(self, be: Backend, dtype: str) -> State:
        return [layer.init_state(be, dtype) for layer in self.layers]

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        Y, _, backprop = self._run(params, None, X, train, rng)
        return Y, backprop

    def apply_with_state(
        self, params: Params, state: State, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, State, Backprop]:
        """``apply`` with the model state: a list with one entry per layer (``{}`` for layers without)."""
        if not isinstance(state, (list, tuple)) or len(state) != len(self.layers):
            got = len(state) if isinstance(state, (list, tuple)) else type(state).__name__
            raise ValueError(
                f"{self!r}: the state must be a list with one entry per layer ({len(self.layers)}), "
                f"got {got}. Was it made by another model? Use the Variables from this model's init()."
            )
        return self._run(params, state, X, train, rng)

    def _run(
        self, params: Params, state: State, X: Array, train: bool, rng: Seed
    ) -> tuple[Array, State, Backprop]:
        if not isinstance(params, (list, tuple)) or len(params) != len(self.layers):
            got = len(params) if isinstance(params, (list, tuple)) else type(params).__name__
            raise TypeError(
                f"{self!r}: params must be a list with one entry per layer ({len(self.layers)}), "
                f"got {got}. Use the params from this model's init()."
            )
        if train and rng is not None:
            rng = host_rng(rng)  # one Generator shared by all layers: successive masks differ
        backprops, states = [], []
        for i, (layer, p) in enumerate(zip(self.layers, params, strict=True)):
            try:
                if state is None:
                    X, backprop_i = layer.apply(p, X, train=train, rng=rng)
                else:
                    X, s, backprop_i = layer.apply_with_state(p, state[i], X, train=train, rng=rng)
                    states.append(s)
            except (TypeError, ValueError) as e:
                e.args = (f"Sequential layer {i}: {e.args[0] if e.args else ''}", *e.args[1:])
                raise
            backprops.append(backprop_i)

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            grads: list[Params] = [None] * len(backprops)
            for i in range(len(backprops) - 1, 0, -1):
                dY, grads[i] = backprops[i](dY)
            if backprops:  # the first layer skips its dX when nobody wants it
                dY, grads[0] = run_backprop(backprops[0], dY, need_dX)
            return dY, grads

        return X, (None if state is None else states), backprop
